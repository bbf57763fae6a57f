// herald's browser client: register or sign in, find people and follow them, write, edit and
// delete posts, and watch the feed live over the WebSocket /post/feed/posted.
//
// Plain DOM, no framework, no build step; herald serves this file as it is. Every piece of
// text that comes from a user goes into the page with textContent, never as HTML.
//
// The live feed: load a page of GET /post/feed, whose X-Feed-Seq header is the feed position
// that page reflects, then open the socket with ?since=<that position>. Every frame carries
// `seq`; the client remembers the last one it applied. When the socket drops, it reconnects
// with backoff (or as soon as the browser is back online) with ?since=<last seq>, and herald
// replays what was missed. A `feed.reset` frame means the gap was too long to replay: reload
// the page and continue from the frame's seq.
'use strict';

const SESSION_KEY = 'herald.session'; // {token, userId, name}, for this tab only
const FEED_PAGE = 50; // posts loaded from GET /post/feed
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;

const $ = (id) => document.getElementById(id);

/** The signed-in user of this tab, or null. */
let session = readJson(SESSION_KEY);

function readJson(key) {
  try {
    return JSON.parse(sessionStorage.getItem(key));
  } catch {
    return null;
  }
}

function writeJson(key, value) {
  sessionStorage.setItem(key, JSON.stringify(value));
}

// ---------------------------------------------------------------------------------------------
// The HTTP API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API; resolves to {data, headers}, or throws an ApiError with herald's message. */
async function api(method, path, { body, auth = true } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && session) headers.Authorization = `Bearer ${session.token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'herald cannot be reached right now; try again in a moment.');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && auth && session) {
      signOut('Your session has ended. Please sign in again.');
    }
    const message = data && typeof data.message === 'string' ? data.message : response.statusText;
    throw new ApiError(response.status, message || `HTTP ${response.status}`);
  }
  return { data, headers: response.headers };
}

/** Runs `action` when `form` is submitted: its button disabled meanwhile, errors shown in it. */
function onSubmit(form, action) {
  const error = form.querySelector('[data-error]');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    error.textContent = '';
    try {
      await action(form.elements);
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    } finally {
      button.disabled = false;
    }
  });
}

/** An element with optional class and text (always as text). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fullName(user) {
  return `${user.first_name} ${user.second_name}`;
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

onSubmit($('register-form'), async (fields) => {
  const password = fields.password.value;
  const { data } = await api('POST', '/user/register', {
    auth: false,
    body: {
      first_name: fields.first_name.value,
      second_name: fields.second_name.value,
      birthdate: fields.birthdate.value,
      city: fields.city.value,
      biography: fields.biography.value,
      password,
    },
  });
  await signIn(data.user_id, password);
  $('register-form').reset();
});

onSubmit($('login-form'), async (fields) => {
  await signIn(fields.id.value.trim(), fields.password.value);
  $('login-form').reset();
});

$('logout').addEventListener('click', async () => {
  // Revoke the token on the server (every tab and socket using it ends), then forget it here;
  // a failure to reach herald still signs this tab out.
  await api('POST', '/logout').catch(() => {});
  signOut('');
});

async function signIn(userId, password) {
  const { data } = await api('POST', '/login', { auth: false, body: { id: userId, password } });
  const token = data.token;
  const { data: user } = await api('GET', `/user/get/${encodeURIComponent(userId)}`, {
    auth: false,
  });
  session = { token, userId, name: fullName(user) };
  writeJson(SESSION_KEY, session);
  enter();
}

function signOut(message) {
  feed.stop();
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  $('app').hidden = true;
  $('whoami').hidden = true;
  $('account').hidden = false;
  $('my-posts').replaceChildren();
  $('people').replaceChildren();
  $('login-form').querySelector('[data-error]').textContent = message;
}

/** Shows the signed-in page and starts the live feed. */
function enter() {
  $('me-name').textContent = session.name;
  $('me-id').textContent = session.userId;
  $('account').hidden = true;
  $('whoami').hidden = false;
  $('app').hidden = false;
  renderMyPosts();
  feed.start();
}

// ---------------------------------------------------------------------------------------------
// People: search, follow and unfollow. herald has no "whom do I follow" call, so the tab
// remembers the follows it made (both calls are idempotent, so a stale button is harmless).

function followingKey() {
  return `herald.following.${session.userId}`;
}

function following() {
  return new Set(readJson(followingKey()) || []);
}

function setFollowing(userId, on) {
  const ids = following();
  if (on) ids.add(userId);
  else ids.delete(userId);
  writeJson(followingKey(), [...ids]);
}

onSubmit($('search-form'), async (fields) => {
  const query = new URLSearchParams({
    first_name: fields.first_name.value,
    last_name: fields.last_name.value,
  });
  const { data: users } = await api('GET', `/user/search?${query}`, { auth: false });
  const list = $('people');
  list.replaceChildren();
  if (users.length === 0) {
    list.append(el('li', 'hint', 'Nobody by that name yet.'));
  }
  for (const user of users) list.append(personItem(user));
});

function personItem(user) {
  const item = el('li', 'person');
  const who = el('span', 'who');
  who.append(el('span', 'name', fullName(user)), el('span', 'hint', ` ${user.city}`));
  item.append(who);
  if (user.id === session.userId) {
    who.append(el('span', 'badge', 'you'));
    return item;
  }
  const state = el('span', 'badge');
  const button = el('button');
  button.type = 'button';
  const show = () => {
    const on = following().has(user.id);
    state.textContent = on ? 'following' : '';
    state.hidden = !on;
    button.textContent = on ? 'Unfollow' : 'Follow';
    button.setAttribute('aria-label', `${button.textContent} ${fullName(user)}`);
  };
  button.addEventListener('click', async () => {
    const on = !following().has(user.id);
    button.disabled = true;
    try {
      await api('PUT', `/friend/${on ? 'set' : 'delete'}/${encodeURIComponent(user.id)}`);
      setFollowing(user.id, on);
      show();
      // Their earlier posts join (or leave) the feed; new ones arrive live either way.
      feed.reload().catch(() => {});
    } catch (failure) {
      state.hidden = false;
      state.textContent = failure.message;
    } finally {
      button.disabled = false;
    }
  });
  show();
  who.append(state);
  item.append(button);
  return item;
}

// ---------------------------------------------------------------------------------------------
// Your posts: written, edited and deleted here. herald has no "my posts" call, so the tab
// remembers the posts written in it.

function myPostsKey() {
  return `herald.posts.${session.userId}`;
}

function myPosts() {
  return readJson(myPostsKey()) || [];
}

function saveMyPosts(posts) {
  writeJson(myPostsKey(), posts);
}

onSubmit($('post-form'), async (fields) => {
  const text = fields.text.value;
  const { data: id } = await api('POST', '/post/create', { body: { text } });
  saveMyPosts([{ id, text }, ...myPosts()]);
  fields.text.value = '';
  renderMyPosts();
});

function renderMyPosts() {
  const list = $('my-posts');
  list.replaceChildren(...myPosts().map(myPostItem));
}

function myPostItem(post) {
  const item = el('li', 'post');
  item.dataset.postId = post.id;
  const article = el('article');
  const text = el('p', 'text', post.text);
  const actions = el('div', 'actions');
  const edit = el('button', '', 'Edit');
  const remove = el('button', 'danger', 'Delete');
  edit.type = remove.type = 'button';
  actions.append(edit, remove);
  article.append(text, actions);
  item.append(article);

  edit.addEventListener('click', () => item.replaceWith(editForm(post, item)));
  remove.addEventListener('click', async () => {
    remove.disabled = true;
    try {
      await api('PUT', `/post/delete/${encodeURIComponent(post.id)}`);
      saveMyPosts(myPosts().filter((p) => p.id !== post.id));
      renderMyPosts();
    } catch (failure) {
      remove.disabled = false;
      actions.append(el('span', 'error', failure.message));
    }
  });
  return item;
}

function editForm(post, shown) {
  const item = el('li', 'post editing');
  const form = el('form');
  const id = `edit-${post.id}`;
  const label = el('label', '', 'Edit your post');
  label.htmlFor = id;
  const text = el('textarea');
  text.id = id;
  text.name = 'text';
  text.rows = 3;
  text.required = true;
  text.maxLength = 10000;
  text.value = post.text;
  const save = el('button', '', 'Save');
  save.type = 'submit';
  const cancel = el('button', '', 'Cancel');
  cancel.type = 'button';
  const error = el('p', 'error');
  error.setAttribute('role', 'alert');
  error.dataset.error = '';
  form.append(label, text, save, cancel, error);
  item.append(form);

  cancel.addEventListener('click', () => item.replaceWith(shown));
  onSubmit(form, async () => {
    await api('PUT', '/post/update', { body: { id: post.id, text: text.value } });
    saveMyPosts(myPosts().map((p) => (p.id === post.id ? { id: p.id, text: text.value } : p)));
    renderMyPosts();
  });
  queueMicrotask(() => text.focus());
  return item;
}

// ---------------------------------------------------------------------------------------------
// The feed: a page from GET /post/feed, then live frames from the WebSocket.

/** Authors' names by id, each asked for once. */
const names = new Map();

function authorName(userId) {
  if (!names.has(userId)) {
    const name = api('GET', `/user/get/${encodeURIComponent(userId)}`, { auth: false })
      .then(({ data }) => fullName(data))
      .catch(() => 'someone');
    names.set(userId, name);
  }
  return names.get(userId);
}

/** The feed's list items by post id. */
const shown = new Map();

function feedItem(postId, authorId) {
  const item = el('li', 'post');
  item.dataset.postId = postId;
  const article = el('article');
  const meta = el('p', 'meta');
  const author = el('span', 'author', '…');
  authorName(authorId).then((name) => {
    author.textContent = name;
  });
  meta.append(author, el('span', 'badge'));
  article.append(meta, el('p', 'text'));
  item.append(article);
  shown.set(postId, item);
  return item;
}

/** Shows a post, new or changed; `badge` says what happened ('' for a post loaded with a page). */
function showPost(postId, authorId, text, badge, { atTop }) {
  let item = shown.get(postId);
  if (!item) {
    item = feedItem(postId, authorId);
    if (atTop) $('feed').prepend(item);
    else $('feed').append(item);
  }
  item.classList.remove('deleted');
  item.querySelector('.text').textContent = text;
  const mark = item.querySelector('.badge');
  // A post that was new a moment ago stays "new" when a repeat of its creation comes by.
  if (badge && !(badge === 'new' && mark.textContent === 'edited')) mark.textContent = badge;
  $('feed-empty').hidden = true;
}

function showDeleted(postId) {
  const item = shown.get(postId);
  if (!item) return;
  item.classList.add('deleted');
  item.querySelector('.text').textContent = 'This post was deleted.';
  item.querySelector('.badge').textContent = 'deleted';
}

function setStatus(state, text) {
  const status = $('connection');
  status.dataset.state = state;
  status.textContent = text;
}

const feed = {
  socket: null,
  /** The position of the last frame applied (null until the first page is loaded). */
  lastSeq: null,
  /** Reconnects tried since the socket was last open. */
  attempt: 0,
  timer: null,
  running: false,
  /** Frames that arrived while a page was loading (applied after it), or null. */
  held: null,
  /** Counts page loads, so only the newest one renders. */
  loads: 0,
  /** Whether connect() is loading the first page (so a second call waits for it). */
  connecting: false,

  start() {
    this.stop();
    this.running = true;
    this.lastSeq = null;
    this.attempt = 0;
    this.connect();
  },

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.detach();
    this.held = null;
    this.loads += 1;
    shown.clear();
    $('feed').replaceChildren();
    $('feed-empty').hidden = false;
    setStatus('offline', 'Not connected');
  },

  /** Loads the first page again; frames arriving meanwhile wait and are applied after it. */
  async reload() {
    const load = ++this.loads;
    this.held = this.held || [];
    try {
      const { data: posts, headers } = await api('GET', `/post/feed?offset=0&limit=${FEED_PAGE}`);
      if (load !== this.loads || !this.running) return;
      shown.clear();
      $('feed').replaceChildren();
      $('feed-empty').hidden = posts.length > 0;
      for (const post of posts) {
        showPost(post.id, post.author_user_id, post.text, '', { atTop: false });
      }
      const position = Number(headers.get('X-Feed-Seq'));
      if (this.lastSeq === null) this.lastSeq = Number.isSafeInteger(position) ? position : 0;
      $('feed-error').textContent = '';
    } finally {
      if (load === this.loads) {
        const held = this.held || [];
        this.held = null;
        for (const frame of held) this.apply(frame);
      }
    }
  },

  async connect() {
    clearTimeout(this.timer);
    if (!this.running || this.socket || this.connecting) return;
    if (this.attempt === 0) setStatus('connecting', 'Connecting…');
    else setStatus('reconnecting', 'Reconnecting…');
    if (this.lastSeq === null) {
      this.connecting = true;
      try {
        await this.reload();
      } catch (failure) {
        $('feed-error').textContent = `The feed could not be loaded: ${failure.message}`;
        this.retry();
        return;
      } finally {
        this.connecting = false;
      }
      if (!this.running || this.socket || this.lastSeq === null) return;
    }
    const url = new URL('/post/feed/posted', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('token', session.token);
    url.searchParams.set('since', String(this.lastSeq));
    const socket = new WebSocket(url);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      setStatus('live', 'Live');
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // 4001: the token expired or was revoked (a log-out elsewhere): sign in again.
      if (event.code === 4001) {
        signOut('Your session has ended. Please sign in again.');
        return;
      }
      // A refused upgrade looks like any lost connection to a page; ask whether the token is
      // still good (a 401 signs the tab out), and try again either way.
      if (!opened) api('GET', '/post/feed?limit=1').catch(() => {});
      this.retry();
    };
  },

  /** Forgets the current socket (closing it), so its late events change nothing. */
  detach() {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      socket.close();
    }
  },

  /** Schedules the next connection: with backoff, or when the browser is online again. */
  retry() {
    if (!this.running) return;
    clearTimeout(this.timer);
    if (!navigator.onLine) {
      setStatus('reconnecting', 'Offline: reconnecting when the network is back…');
      return; // the 'online' event calls connect()
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    setStatus('reconnecting', `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    this.timer = setTimeout(() => this.connect(), delay);
  },

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame.seq !== 'number') return;
    if (this.held) this.held.push(frame);
    else this.apply(frame);
  },

  apply(frame) {
    if (frame.type === 'feed.reset') {
      // The gap was too long to replay: what the page shows is stale. Reload it and go on
      // from the position the server gave.
      this.lastSeq = frame.seq;
      this.reload().catch((failure) => {
        $('feed-error').textContent = `The feed could not be reloaded: ${failure.message}`;
      });
      return;
    }
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // seen already
    this.lastSeq = frame.seq;
    switch (frame.type) {
      case 'post.created':
        showPost(frame.postId, frame.author_user_id, frame.postText, 'new', { atTop: true });
        break;
      case 'post.updated':
        showPost(frame.postId, frame.author_user_id, frame.postText, 'edited', { atTop: true });
        break;
      case 'post.deleted':
        showDeleted(frame.postId);
        break;
      default:
        break; // a kind of event this page does not know yet
    }
  },
};

// The browser knows the network is gone before TCP does: drop the socket now, and reconnect
// (resuming from the last position) as soon as it is back.
window.addEventListener('offline', () => {
  if (feed.running && feed.socket) {
    feed.detach();
    feed.retry();
  }
});
window.addEventListener('online', () => {
  if (feed.running && !feed.socket) feed.connect();
});

if (session && session.token) enter();
