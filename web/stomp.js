// herald's feed test page: sign in, then read the feed live with sockjs-client + @stomp/stompjs
// (vendored under /vendor/) or with EventSource. Every event is listed with its seq; the last
// seq is kept so a reconnect resumes after it.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let lastSeq = null;
  let client = null;
  let source = null;

  function status(text, state) {
    $('status').textContent = text;
    $('status').dataset.state = state;
  }

  function show(event) {
    if (typeof event.seq === 'number') lastSeq = event.seq;
    const item = document.createElement('li');
    item.dataset.type = event.type;
    item.dataset.seq = String(event.seq);
    const text = event.type === 'feed.reset'
      ? `feed.reset: reload, continue from ${event.seq}`
      : `${event.type} #${event.seq}: ${event.postText ?? '(deleted)'}`;
    item.textContent = text;
    $('events').prepend(item);
  }

  async function login(id, password) {
    const response = await fetch('/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id, password }),
    });
    if (!response.ok) throw new Error(`sign-in refused (${response.status})`);
    return (await response.json()).token;
  }

  function stomp(token, overSockJs) {
    const headers = lastSeq === null ? {} : { since: String(lastSeq) };
    client = new StompJs.Client({
      connectHeaders: { passcode: token },
      reconnectDelay: 2000,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
    });
    if (overSockJs) {
      client.webSocketFactory = () => new SockJS(`/sockjs?token=${encodeURIComponent(token)}`);
    } else {
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      client.brokerURL = `${scheme}://${location.host}/stomp`;
    }
    client.onConnect = () => {
      client.subscribe('/user/queue/feed', (message) => show(JSON.parse(message.body)),
        { ...headers, receipt: 'subscribed' });
      client.watchForReceipt('subscribed', () => status('Subscribed', 'online'));
    };
    client.onStompError = (frame) => status(`Error: ${frame.headers.message}`, 'offline');
    client.onWebSocketClose = () => status('Disconnected: reconnecting', 'offline');
    client.activate();
  }

  function sse(token) {
    source = new EventSource(`/post/feed/events?token=${encodeURIComponent(token)}`);
    source.onopen = () => status('Subscribed', 'online');
    source.onerror = () => status('Disconnected: reconnecting', 'offline');
    for (const type of ['post.created', 'post.updated', 'post.deleted', 'feed.reset']) {
      source.addEventListener(type, (event) => show(JSON.parse(event.data)));
    }
  }

  $('connect-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (client) client.deactivate();
    if (source) source.close();
    status('Signing in…', 'connecting');
    try {
      const token = await login($('user-id').value.trim(), $('password').value);
      status('Connecting…', 'connecting');
      const transport = $('transport').value;
      if (transport === 'sse') sse(token);
      else stomp(token, transport === 'sockjs');
    } catch (error) {
      status(String(error.message || error), 'offline');
    }
  });
})();
