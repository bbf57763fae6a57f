// A feed client nobody at herald wrote, driven by tests/it/transports.rs: it connects to herald
// with a third-party library and prints one JSON line per thing that happens, on stdout:
//   {"ready": true}                      subscribed (the SUBSCRIBE's RECEIPT, or the stream open)
//   {"message": <body>, "headers": {...}} a feed event (STOMP MESSAGE or SSE event)
//   {"error": "..."}                     a STOMP ERROR frame, a socket error
//   {"closed": true}                     the connection ended
// It stops when stdin closes.
//
// node feed_client.mjs <kind> <http base url> <token> [options as JSON]
//   kind: stompjs-ws | stompjs-sockjs | legacy-sockjs | sse
//   options: {"tokenIn": "passcode"|"authorization"|"token"|"url",
//             "transport": "websocket"|"xhr-streaming"|"xhr-polling"|"eventsource",
//             "since": <seq>, "destination": "/user/queue/feed", "ack": "auto"|"client"}
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);

const [kind, base, token, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson || '{}');
const tokenIn = options.tokenIn || 'passcode';
const destination = options.destination || '/user/queue/feed';

const say = (line) => process.stdout.write(JSON.stringify(line) + '\n');
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

function connectHeaders() {
  switch (tokenIn) {
    case 'passcode': return { login: 'herald', passcode: token };
    case 'authorization': return { Authorization: `Bearer ${token}` };
    case 'token': return { token };
    default: return {};
  }
}

function url(path) {
  const u = new URL(path, base);
  if (tokenIn === 'url') u.searchParams.set('token', token);
  return u;
}

function subscribeHeaders() {
  const headers = { receipt: 'subscribed' };
  if (options.since !== undefined) headers.since = String(options.since);
  if (options.ack) headers.ack = options.ack;
  return headers;
}

async function stompjs(webSocketFactory) {
  const { Client } = await import('@stomp/stompjs');
  const client = new Client({
    webSocketFactory,
    connectHeaders: connectHeaders(),
    reconnectDelay: 0,
    heartbeatIncoming: 4000,
    heartbeatOutgoing: 4000,
    debug: () => {},
  });
  client.onConnect = () => {
    client.watchForReceipt('subscribed', () => say({ ready: true }));
    client.subscribe(destination, (message) => {
      say({ message: JSON.parse(message.body), headers: message.headers });
      if (options.ack === 'client') message.ack();
    }, subscribeHeaders());
  };
  client.onStompError = (frame) => say({ error: frame.headers.message || frame.body });
  client.onWebSocketError = () => say({ error: 'socket error' });
  client.onWebSocketClose = (event) => {
    say({ closed: true, code: event && event.code });
    client.deactivate();
  };
  client.activate();
}

function sockjs() {
  const SockJS = require('sockjs-client');
  const transports = options.transport ? [options.transport] : undefined;
  return new SockJS(url('/sockjs').toString(), null, { transports });
}

function legacy() {
  const Stomp = require('stompjs/lib/stomp.js').Stomp;
  // stomp.js 2.3 takes its timers from `window` in a browser; under Node, from Node.
  Stomp.setInterval = (interval, f) => setInterval(f, interval);
  Stomp.clearInterval = (id) => clearInterval(id);
  const client = Stomp.over(sockjs());
  client.debug = null;
  client.heartbeat.outgoing = 4000;
  client.heartbeat.incoming = 4000;
  client.connect(connectHeaders(), () => {
    client.onreceipt = (frame) => {
      if (frame.headers['receipt-id'] === 'subscribed') say({ ready: true });
    };
    client.subscribe(destination, (message) => {
      say({ message: JSON.parse(message.body), headers: message.headers });
      if (options.ack === 'client') message.ack();
    }, subscribeHeaders());
  }, (error) => {
    if (typeof error === 'string') say({ closed: true, error });
    else say({ error: error.headers.message || error.body });
  });
}

function sse() {
  const EventSource = require('eventsource');
  const u = url('/post/feed/events');
  if (options.since !== undefined) u.searchParams.set('since', String(options.since));
  const headers = tokenIn === 'url' ? {} : { Authorization: `Bearer ${token}` };
  const source = new EventSource(u.toString(), { headers });
  source.onopen = () => say({ ready: true });
  source.onerror = (event) => say({ error: `sse error ${event.status || ''}`.trim() });
  const onEvent = (event) => say({ message: JSON.parse(event.data), headers: { id: event.lastEventId, event: event.type } });
  for (const type of ['post.created', 'post.updated', 'post.deleted', 'feed.reset']) {
    source.addEventListener(type, onEvent);
  }
}

switch (kind) {
  case 'stompjs-ws': {
    const { WebSocket } = await import('ws');
    const target = url('/stomp');
    target.protocol = target.protocol.replace('http', 'ws');
    await stompjs(() => new WebSocket(target.toString(), ['v12.stomp', 'v11.stomp', 'v10.stomp']));
    break;
  }
  case 'stompjs-sockjs':
    await stompjs(sockjs);
    break;
  case 'legacy-sockjs':
    legacy();
    break;
  case 'sse':
    sse();
    break;
  default:
    say({ error: `unknown kind ${kind}` });
    process.exit(2);
}
