// The centrifuge npm SDK against /connection/websocket, driven line by line by a test
// (tests/chat/test_centrifugo_js.py): `node client.mjs <url> <room>`, the token in the
// CENTRIFUGE_TOKEN environment variable (never on the command line). Every event and answer
// is printed as one JSON line; commands come one per line on stdin: `publish <text>`,
// `history`, `presence`, `exit`.
import { createInterface } from 'node:readline';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

const [url, room] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + '\n');

// Node 20 has no global WebSocket: the SDK is handed the `ws` package's.
const client = new Centrifuge(url, {
  token: process.env.CENTRIFUGE_TOKEN,
  websocket: WebSocket,
  maxReconnectDelay: 500, // a test waits for the reconnection: keep it short
});
client.on('connected', (ctx) => print({ event: 'connected', client: ctx.client, data: ctx.data }));
client.on('disconnected', (ctx) => print({ event: 'disconnected', code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => print({ event: 'error', message: String(ctx.error && ctx.error.message) }));

const sub = client.newSubscription(room, { joinLeave: true });
sub.on('subscribed', (ctx) => print({
  event: 'subscribed',
  recoverable: ctx.recoverable,
  positioned: ctx.positioned,
  position: ctx.streamPosition,
  wasRecovering: ctx.wasRecovering,
  recovered: ctx.recovered,
}));
sub.on('subscribing', (ctx) => print({ event: 'subscribing', code: ctx.code, reason: ctx.reason }));
sub.on('publication', (ctx) => print({ event: 'publication', data: ctx.data, offset: ctx.offset, info: ctx.info }));
sub.on('join', (ctx) => print({ event: 'join', info: ctx.info }));
sub.on('error', (ctx) => print({ event: 'subscription_error', code: ctx.error.code, message: ctx.error.message }));

async function run(line) {
  const [command, ...rest] = line.split(' ');
  try {
    if (command === 'publish') {
      await sub.publish({ text: rest.join(' ') });
      print({ event: 'published' });
    } else if (command === 'history') {
      const result = await sub.history({ limit: 10 });
      print({ event: 'history', offset: result.offset, epoch: result.epoch,
        texts: result.publications.map((p) => p.data.text) });
    } else if (command === 'presence') {
      const presence = await sub.presence();
      const stats = await sub.presenceStats();
      print({ event: 'presence', users: Object.keys(presence.clients).sort(), stats });
    } else if (command === 'exit') {
      client.disconnect();
      process.exit(0);
    }
  } catch (error) {
    print({ event: 'failed', command, code: error.code, message: error.message });
  }
}

createInterface({ input: process.stdin }).on('line', (line) => { run(line.trim()); });
client.connect();
sub.subscribe();
