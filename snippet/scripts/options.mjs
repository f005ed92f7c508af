// The one esbuild configuration, shared by the build and the tests of the bundles.
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

const options = {
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2017',
  platform: 'browser',
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
  write: false,
}

// The SRI value of a file's bytes, as s.js sets it on the <script> that loads p.js.
export const integrity = (code) => 'sha256-' + createHash('sha256').update(code).digest('base64')

// Both files as text, {'s.js', 'p.js'}: p.js first, since s.js carries its hash.
export async function bundle() {
  const one = async (entry, define = {}) =>
    (await build({ ...options, entryPoints: [join(root, 'src', entry)], define })).outputFiles[0].text
  const p = await one('publisher-main.js')
  const s = await one('main.js', { P_INTEGRITY: JSON.stringify(integrity(p)) })
  return { 's.js': s, 'p.js': p }
}
