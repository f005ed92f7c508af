import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isId, record, readRecord, cookie, readCookie } from '../src/storage.js'

const ID = 'AZNu3rN4q2vXo4Gx7A9kQmH3L8pZbC1dEfGhIjKlMnOpQr' // 46 characters, like the tracker's
const DAY = 864e5

test('isId accepts URL-safe base64 ids only', () => {
  assert.equal(isId(ID), true)
  assert.equal(isId('abc_DEF-0123456789'), true)
  assert.equal(isId('short'), false)
  assert.equal(isId(ID + '; path=/'), false)
  assert.equal(isId('a'.repeat(129)), false)
  assert.equal(isId('<script>alert(1)</script>xx'), false)
  assert.equal(isId(undefined), false)
  assert.equal(isId(null), false)
  assert.equal(isId({ id: ID }), false)
})

test('a stored record keeps the id until the window ends', () => {
  const now = 1_700_000_000_000
  const json = record(ID, 30, now)
  assert.deepEqual(JSON.parse(json), { id: ID, exp: now + 30 * DAY })
  assert.equal(readRecord(json, now), ID)
  assert.equal(readRecord(json, now + 30 * DAY - 1), ID)
  assert.equal(readRecord(json, now + 30 * DAY), undefined)
  assert.equal(readRecord(json, now + 31 * DAY), undefined)
  assert.equal(readRecord(record(ID, 1, now), now + 2 * DAY), undefined)
})

test('readRecord ignores missing, malformed and forged records', () => {
  const now = 1_700_000_000_000
  assert.equal(readRecord(null, now), undefined)
  assert.equal(readRecord('', now), undefined)
  assert.equal(readRecord('not json', now), undefined)
  assert.equal(readRecord('{"id":"' + ID + '"}', now), undefined) // no exp
  assert.equal(readRecord(JSON.stringify({ id: 'x;y', exp: now + DAY }), now), undefined)
})

test('cookie is first-party, Lax, for the window, Secure on https', () => {
  assert.equal(cookie(ID, 30, true), `ct_click=${ID}; path=/; max-age=2592000; SameSite=Lax; Secure`)
  assert.equal(cookie(ID, 7, false), `ct_click=${ID}; path=/; max-age=604800; SameSite=Lax`)
})

test('readCookie finds ct_click among other cookies', () => {
  assert.equal(readCookie(`ct_click=${ID}`), ID)
  assert.equal(readCookie(`a=1; ct_click=${ID}; b=2`), ID)
  assert.equal(readCookie(`a=1; xct_click=${ID}`), undefined)
  assert.equal(readCookie('ct_click=bad;value'), undefined)
  assert.equal(readCookie(''), undefined)
})
