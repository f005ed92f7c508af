import { test } from 'node:test'
import assert from 'node:assert/strict'
import { linkCode } from '../src/publisher.js'

const O = 'https://t.example'

test('linkCode takes the path segment after /c/', () => {
  assert.equal(linkCode('https://t.example/c/ab12', O), 'ab12')
  assert.equal(linkCode('https://t.example/c/ab12?sub1=x&ct_page=%2F', O), 'ab12')
  assert.equal(linkCode('https://t.example/c/ab12#x', O), 'ab12')
  assert.equal(linkCode('https://t.example/c/ab12/more', O), 'ab12')
})

test('linkCode rejects anything that is not a tracking link of this tracker', () => {
  assert.equal(linkCode('https://t.example/x/ab12', O), '')
  assert.equal(linkCode('https://other.example/c/ab12', O), '')
  assert.equal(linkCode('https://t.example.evil/c/ab12', O), '')
  assert.equal(linkCode('http://t.example/c/ab12', O), '')
  assert.equal(linkCode('https://shop.example/?u=https://t.example/c/ab12', O), '')
  assert.equal(linkCode(undefined, O), '')
  assert.equal(linkCode({ baseVal: 'https://t.example/c/ab12' }, O), '') // SVG <a>
})
