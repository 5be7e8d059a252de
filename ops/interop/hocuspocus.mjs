// Drives a running Strata daemon with the real @hocuspocus/provider:
// providers on two documents share one socket (HocuspocusProviderWebsocket),
// two more on one document share another (sessionAwareness), edits and
// awareness converge through Strata, every change is acknowledged (no
// unsynced changes left), a read key is told "readonly" and a bad key is
// refused, and fresh providers on a new socket read the texts back from
// the store.
//
//   node hocuspocus.mjs http://127.0.0.1:PORT/v1/orgs/ORG/projects/PROJECT WRITE_KEY READ_KEY
//
// With HOCUSPOCUS_RECORD=<dir>, every frame the providers send is also
// written there, one file each (seeds for fuzz/corpus/hocuspocus_message).
import * as Y from 'yjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

const [base, key, readKey] = process.argv.slice(2)
if (!base || !key || !readKey) throw new Error('usage: node hocuspocus.mjs <project url> <write key> <read key>')
const url = base.replace(/^http/, 'ws') + '/hocuspocus'

const record = process.env.HOCUSPOCUS_RECORD
class RecordingWebSocket extends WebSocket {
  send (data, ...rest) {
    if (record) {
      const bytes = Buffer.from(data)
      writeFileSync(join(record, createHash('sha1').update(bytes).digest('hex')), bytes)
    }
    return super.send(data, ...rest)
  }
}

function check (cond, what) {
  if (!cond) throw new Error(`hocuspocus check failed: ${what}`)
  console.log(`ok - ${what}`)
}

function until (cond, what, ms = 15000) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const tick = () => {
      if (cond()) return resolve()
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(tick, 20)
    }
    tick()
  })
}

const sockets = []
function socket () {
  const s = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: RecordingWebSocket })
  sockets.push(s)
  return s
}

function provider (websocketProvider, name, token, options = {}) {
  const events = { failed: [] }
  const p = new HocuspocusProvider({
    websocketProvider,
    name,
    token,
    document: new Y.Doc(),
    onAuthenticationFailed: ({ reason }) => events.failed.push(reason),
    ...options
  })
  p.attach()
  p.events = events
  return p
}

const text = (p) => p.document.getText('t').toString()
const ready = (ps, what) => until(() => ps.every((p) => p.isAuthenticated && p.isSynced), what)
const acknowledged = (ps, what) => until(() => ps.every((p) => p.unsyncedChanges === 0), what)

async function main () {
  // Two documents on one socket.
  const one = socket()
  const a1 = provider(one, 'hp-a', key)
  const b1 = provider(one, 'hp-b', key)
  // One document twice on another socket, told apart by session.
  const two = socket()
  const a2 = provider(two, 'hp-a', key, { sessionAwareness: true })
  const a3 = provider(two, 'hp-a', key, { sessionAwareness: true })
  const all = [a1, b1, a2, a3]
  await ready(all, 'four providers authenticated and synced')
  check(all.every((p) => p.authorizedScope === 'read-write'), 'a write key is read-write')

  a1.document.getText('t').insert(0, 'from a')
  await until(() => text(a2) === 'from a' && text(a3) === 'from a', 'a1 edit reaches a2 and a3')
  check(true, 'an edit crosses sockets and sessions')
  a3.document.getText('t').insert(text(a3).length, ', from b')
  await until(() => text(a1) === 'from a, from b' && text(a2) === 'from a, from b', 'a3 edit reaches a1 and a2')
  check(true, 'an edit from a session reaches the socket it shares and the other')
  b1.document.getText('t').insert(0, 'second document')
  await acknowledged(all, 'every change acknowledged')
  check(all.every((p) => !p.hasUnsyncedChanges), 'sync status acknowledged every change (no unsynced changes)')
  check(text(b1) === 'second document' && text(a1) === 'from a, from b', 'documents stay apart on one socket')

  a1.setAwarenessField('user', { name: 'ada' })
  await until(() => [...a2.awareness.getStates().values()].some((s) => s.user?.name === 'ada'), 'awareness relayed')
  check(true, 'awareness is relayed')

  // A read key: synced, told readonly; a bad key: refused.
  const three = socket()
  const reader = provider(three, 'hp-a', readKey)
  const stranger = provider(three, 'hp-b', 'sk_0123456789abcdef_wrong')
  await ready([reader], 'the reader synced')
  check(reader.authorizedScope === 'readonly', 'a read key is readonly')
  check(text(reader) === 'from a, from b', 'the reader has the text')
  await until(() => stranger.events.failed.length > 0, 'the stranger refused')
  check(stranger.events.failed[0] === 'unauthorized' && !stranger.isAuthenticated, 'a bad key is refused (unauthorized)')

  for (const p of [...all, reader, stranger]) p.destroy()
  for (const s of sockets) s.destroy()

  // From the store: fresh documents on a new socket.
  const four = socket()
  const fresh = [provider(four, 'hp-a', key), provider(four, 'hp-b', key)]
  await ready(fresh, 'fresh providers synced')
  check(text(fresh[0]) === 'from a, from b' && text(fresh[1]) === 'second document', 'the texts come back from Strata')
  await acknowledged(fresh, 'fresh providers acknowledged')
  for (const p of fresh) p.destroy()
  four.destroy()
  console.log('hocuspocus: all checks passed')
}

main().then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
