// Builds src/ into ../static/s.js and enforces the size budget.
//   node scripts/build.mjs          build, write ../static/s.js, check the budget
//   node scripts/build.mjs --check  build to a temp file, fail if it differs from ../static/s.js
//                                   or if it is over the budget
//   node scripts/build.mjs --size   check the budget of the committed ../static/s.js
import { build } from 'esbuild'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { options, root } from './options.mjs'

const BUDGET = 1490 // bytes, min+gzip -9
const target = join(root, '..', 'static', 's.js')
const mode = process.argv[2] || ''

async function bundle(outfile) {
  await build({ ...options, outfile })
}

function size(file) {
  const code = readFileSync(file)
  const gz = gzipSync(code, { level: 9 }).length
  console.log(`static/s.js: ${code.length} bytes minified, ${gz} bytes min+gzip (budget ${BUDGET})`)
  if (gz > BUDGET) {
    console.error(`static/s.js is over the budget by ${gz - BUDGET} bytes`)
    process.exitCode = 1
  }
}

if (mode == '--check') {
  const dir = mkdtempSync(join(tmpdir(), 'clicktrail-snippet-'))
  try {
    const fresh = join(dir, 's.js')
    await bundle(fresh)
    let committed = null
    try {
      committed = readFileSync(target)
    } catch (e) {}
    if (!committed || !readFileSync(fresh).equals(committed)) {
      console.error('static/s.js is not the build of snippet/src: run `npm run build` in snippet/')
      process.exitCode = 1
    } else {
      console.log('static/s.js matches the build of snippet/src')
    }
    size(fresh)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
} else if (mode == '--size') {
  size(target)
} else if (mode == '') {
  await bundle(target)
  size(target)
} else {
  console.error(`unknown option ${mode}`)
  process.exitCode = 2
}
