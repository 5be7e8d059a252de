// The Hocuspocus route's rate with the real @hocuspocus/provider (run by
// bench/hocuspocus-rate.sh): N providers, each on its own socket, on one
// document, each typing EDITS edits of six characters at its own cursor
// (its own Y.Text) as fast as it can. Prints the time until every provider
// has every edit and none has an unsynced change left (every update
// acknowledged as durable).
//
//   node hocuspocus-rate.mjs http://127.0.0.1:PORT/v1/orgs/ORG/projects/PROJECT WRITE_KEY [N] [EDITS]
import * as Y from 'yjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import WebSocket from 'ws'

const [base, key, n = '8', edits = '500'] = process.argv.slice(2)
if (!base || !key) throw new Error('usage: node hocuspocus-rate.mjs <project url> <write key> [providers] [edits]')
const url = base.replace(/^http/, 'ws') + '/hocuspocus'
const [providers, perProvider] = [Number(n), Number(edits)]
const name = `rate-${Date.now()}`

const clients = []
for (let i = 0; i < providers; i++) {
  const websocketProvider = new HocuspocusProviderWebsocket({ url, WebSocketPolyfill: WebSocket })
  const document = new Y.Doc()
  const provider = new HocuspocusProvider({ websocketProvider, name, document, token: key })
  provider.attach()
  clients.push({ provider, document, text: document.getText(`t${i}`) })
}
await Promise.all(clients.map(({ provider }) =>
  new Promise((resolve) => provider.isSynced ? resolve() : provider.on('synced', resolve))))

const typed = (document) => {
  let chars = 0
  for (let i = 0; i < providers; i++) chars += document.getText(`t${i}`).length
  return chars
}
const began = performance.now()
for (const { text } of clients) {
  (async () => {
    for (let k = 0; k < perProvider; k++) {
      text.insert(text.length, String(k).padStart(5, '0') + ';')
      // Let the socket and the other providers run now and then, as a
      // browser's event loop would between keystrokes.
      if (k % 50 === 49) await new Promise((resolve) => setImmediate(resolve))
    }
  })()
}
const want = providers * perProvider * 6
await new Promise((resolve) => {
  const poll = () => clients.every(({ provider, document }) =>
    typed(document) === want && provider.unsyncedChanges === 0)
    ? resolve()
    : setTimeout(poll, 1)
  poll()
})
const seconds = (performance.now() - began) / 1000
const rate = Math.round(providers * perProvider / seconds)
console.log(`${providers} providers x ${perProvider} edits: converged and acknowledged in ${seconds.toFixed(2)} s: ${rate} updates/s`)
process.exit(0)
