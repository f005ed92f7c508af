// Builds src/ into ../static/s.js and ../static/p.js and enforces their size budgets.
//   node scripts/build.mjs          build, write both files, check the budgets
//   node scripts/build.mjs --check  build in memory, fail if a committed file differs
//                                   or if either is over its budget
//   node scripts/build.mjs --size   check the budgets of the committed files, and that
//                                   s.js pins the committed p.js
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { bundle, integrity, root } from './options.mjs'

// bytes, min+gzip -9: s.js on every page, p.js (the publisher half) only on publisher pages
const BUDGETS = { 's.js': 1200, 'p.js': 700 }
const path = (name) => join(root, '..', 'static', name)
const mode = process.argv[2] || ''

function committed(name) {
  try {
    return readFileSync(path(name), 'utf8')
  } catch (e) {
    return null
  }
}

function size(files) {
  for (const [name, code] of Object.entries(files)) {
    const gz = gzipSync(code, { level: 9 }).length
    const min = Buffer.byteLength(code)
    console.log(`static/${name}: ${min} bytes minified, ${gz} bytes min+gzip (budget ${BUDGETS[name]})`)
    if (gz > BUDGETS[name]) {
      console.error(`static/${name} is over the budget by ${gz - BUDGETS[name]} bytes`)
      process.exitCode = 1
    }
  }
  if (!files['s.js'].includes(`"${integrity(files['p.js'])}"`)) {
    console.error('static/s.js does not carry the integrity of static/p.js')
    process.exitCode = 1
  }
}

if (mode == '--check') {
  const fresh = await bundle()
  for (const [name, code] of Object.entries(fresh)) {
    if (committed(name) !== code) {
      console.error(`static/${name} is not the build of snippet/src: run \`npm run build\` in snippet/`)
      process.exitCode = 1
    } else {
      console.log(`static/${name} matches the build of snippet/src`)
    }
  }
  size(fresh)
} else if (mode == '--size') {
  size({ 's.js': committed('s.js') || '', 'p.js': committed('p.js') || '' })
} else if (mode == '') {
  const fresh = await bundle()
  for (const [name, code] of Object.entries(fresh)) writeFileSync(path(name), code)
  size(fresh)
} else {
  console.error(`unknown option ${mode}`)
  process.exitCode = 2
}
