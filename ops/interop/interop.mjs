// Drives a running Strata daemon with the reference JavaScript Yjs stack:
// posts updates made by yjs, reloads the state, and syncs two y-websocket
// providers through the daemon's WebSocket endpoint.
//
//   node interop.mjs http://127.0.0.1:PORT/v1/orgs/ORG/projects/PROJECT KEY
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [base, key] = process.argv.slice(2)
if (!base || !key) throw new Error('usage: node interop.mjs <project url> <key>')
const auth = { Authorization: `Bearer ${key}` }

function check (cond, what) {
  if (!cond) throw new Error(`interop check failed: ${what}`)
  console.log(`ok - ${what}`)
}

async function postAndReload () {
  const doc = new Y.Doc()
  const updates = []
  doc.on('update', (u) => updates.push(u))
  doc.getText('t').insert(0, 'hello from yjs')
  doc.getMap('m').set('answer', 42)
  doc.getArray('a').push(['x', 'y'])
  doc.getText('t').delete(0, 6)
  // One update as a raw body, the rest as base64 JSON.
  let res = await fetch(`${base}/docs/js-post/updates`, {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/octet-stream', 'X-Strata-Origin': 'node' },
    body: updates[0]
  })
  check(res.status === 201, `POST one update -> 201 (got ${res.status})`)
  res = await fetch(`${base}/docs/js-post/updates`, {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ updates: updates.slice(1).map((u) => Buffer.from(u).toString('base64')) })
  })
  const body = await res.json()
  check(res.status === 201 && body.data.last_seq === updates.length, 'POST base64 batch -> dense seqs')

  res = await fetch(`${base}/docs/js-post`, { headers: { ...auth, Accept: 'application/octet-stream' } })
  check(res.headers.get('x-strata-seq') === String(updates.length), 'X-Strata-Seq names the last update')
  const reloaded = new Y.Doc()
  Y.applyUpdate(reloaded, new Uint8Array(await res.arrayBuffer()))
  check(reloaded.getText('t').toString() === 'from yjs', 'reloaded text equals the original')
  check(reloaded.getMap('m').get('answer') === 42, 'reloaded map equals the original')
  check(JSON.stringify(reloaded.getArray('a').toArray()) === '["x","y"]', 'reloaded array equals the original')

  // Only what a state vector lacks.
  const partial = new Y.Doc()
  Y.applyUpdate(partial, updates[0])
  const sv = Buffer.from(Y.encodeStateVector(partial)).toString('base64')
  res = await fetch(`${base}/docs/js-post?state_vector=${encodeURIComponent(sv)}`, { headers: { ...auth, Accept: 'application/octet-stream' } })
  Y.applyUpdate(partial, new Uint8Array(await res.arrayBuffer()))
  check(partial.getText('t').toString() === 'from yjs', 'state_vector diff completes a partial replica')

  res = await fetch(`${base}/docs/js-post/updates`, {
    method: 'POST',
    headers: { ...auth, 'Content-Type': 'application/octet-stream' },
    body: new Uint8Array([1, 2, 3, 250])
  })
  check(res.status === 400, 'garbage is refused with 400')
}

function connect (room, doc) {
  const server = base.replace(/^http/, 'ws') + '/docs'
  return new WebsocketProvider(server, `${room}/ws`, doc, {
    WebSocketPolyfill: WebSocket,
    params: { token: key },
    disableBc: true
  })
}

function until (cond, what, ms = 10000) {
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

async function twoProviders () {
  const d1 = new Y.Doc()
  const d2 = new Y.Doc()
  const p1 = connect('js-live', d1)
  const p2 = connect('js-live', d2)
  await until(() => p1.synced && p2.synced, 'both providers synced')
  check(true, 'two y-websocket providers synced')
  d1.getText('t').insert(0, 'typed in provider one')
  await until(() => d2.getText('t').toString() === 'typed in provider one', 'edit to reach provider two')
  check(true, 'an edit in one provider reaches the other')
  d2.getMap('m').set('k', 'v')
  await until(() => d1.getMap('m').get('k') === 'v', 'map edit to reach provider one')
  check(true, 'and back')
  p1.awareness.setLocalStateField('user', { name: 'one' })
  await until(() => [...p2.awareness.getStates().values()].some((s) => s.user && s.user.name === 'one'), 'awareness relay')
  check(true, 'awareness is relayed')
  p1.destroy()
  p2.destroy()
  // The edits were persisted: a fresh load has them.
  await until(() => true, 'settle', 10)
  const res = await fetch(`${base}/docs/js-live`, { headers: { ...auth, Accept: 'application/octet-stream' } })
  const fresh = new Y.Doc()
  Y.applyUpdate(fresh, new Uint8Array(await res.arrayBuffer()))
  check(fresh.getText('t').toString() === 'typed in provider one' && fresh.getMap('m').get('k') === 'v', 'provider edits are durable')
}

await postAndReload()
await twoProviders()
console.log('interop: all checks passed')
process.exit(0)
