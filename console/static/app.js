// The console's shell: sign-in, navigation and the hash router (#/tasks?status=failed, #/tasks/12).
// Static files only: every figure on every page comes from the public API (api.js).

import { render, useEffect, useState } from "./vendor/preact-htm.module.js";
import { closeTaskStream, currentSession, get, identity, signIn, signOut as endSession, tokenClaims } from "./api.js";
import { ErrorBox, html, link } from "./ui.js";
import { JobPage, JobsPage } from "./pages/jobs.js";
import { MonitoringPage } from "./pages/monitoring.js";
import { QueuesPage, WorkersPage } from "./pages/operations.js";
import { SchedulesPage } from "./pages/schedules.js";
import { TaskPage, TasksPage } from "./pages/tasks.js";

const NAV = [
  ["/tasks", "Tasks"],
  ["/queues", "Queues"],
  ["/workers", "Workers"],
  ["/jobs", "Persistent jobs"],
  ["/schedules", "Schedules"],
  ["/monitoring", "Monitoring"],
];

// Ending the session also ends the tab's task stream (it was opened with that token).
function signOut() {
  closeTaskStream();
  endSession();
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/tasks";
  const [path, query = ""] = raw.split("?");
  return { path: path || "/tasks", params: Object.fromEntries(new URLSearchParams(query)) };
}

export function navigate(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  window.location.hash = query ? `${path}?${query}` : path;
}

// `make run` prints a link with the development token in the fragment (never sent to a server):
// take it into the session and drop it from the address bar and the history.
function adoptTokenFromLink() {
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  if (!fragment.get("token")) return;
  try {
    signIn(fragment.get("token"), fragment.get("brand"));
  } catch {
    /* a bad link: the sign-in page explains */
  }
  window.history.replaceState(null, "", `${window.location.pathname}#/tasks`);
}

function SignIn({ onSignedIn }) {
  const [token, setToken] = useState("");
  const [brand, setBrand] = useState("");
  const [error, setError] = useState(null);
  const brands = (tokenClaims(token) || {}).brands || [];
  useEffect(() => {
    if (brands.length && !brands.some((b) => String(b.id) === brand)) setBrand(String(brands[0].id));
  }, [token]);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      signIn(token.trim(), brand);
      await get("/tasks/", { page_size: 1 }); // the platform accepts the token for this brand
      onSignedIn();
    } catch (err) {
      signOut();
      setError(err);
    }
  };
  return html`<main class="signin">
    <form class="card" onSubmit=${submit} data-testid="signin">
      <h1>taskhub console</h1>
      <p class="muted">Sign in with a JWT of your identity provider (<code>make token</code> in development).</p>
      <label>Token <textarea name="token" rows="4" required value=${token} onInput=${(e) => setToken(e.currentTarget.value)}></textarea></label>
      <label
        >Brand
        ${brands.length
          ? html`<select name="brand" value=${brand} onChange=${(e) => setBrand(e.currentTarget.value)}>
              ${brands.map((b) => html`<option value=${b.id}>${b.name || b.id} (${b.id}, ${b.role})</option>`)}
            </select>`
          : html`<input name="brand" inputmode="numeric" required value=${brand} onInput=${(e) => setBrand(e.currentTarget.value)} />`}
      </label>
      <${ErrorBox} error=${error} />
      <button class="primary" type="submit">Sign in</button>
    </form>
  </main>`;
}

function Page({ route }) {
  const { path, params } = route;
  const parts = path.split("/").filter(Boolean);
  const props = { params, navigate };
  if (parts[0] === "tasks" && parts[1]) return html`<${TaskPage} id=${parts[1]} ...${props} />`;
  if (parts[0] === "tasks") return html`<${TasksPage} ...${props} />`;
  if (parts[0] === "queues") return html`<${QueuesPage} ...${props} />`;
  if (parts[0] === "workers") return html`<${WorkersPage} ...${props} />`;
  if (parts[0] === "jobs" && parts[1]) return html`<${JobPage} id=${parts[1]} ...${props} />`;
  if (parts[0] === "jobs") return html`<${JobsPage} ...${props} />`;
  if (parts[0] === "schedules") return html`<${SchedulesPage} ...${props} />`;
  if (parts[0] === "monitoring") return html`<${MonitoringPage} ...${props} />`;
  return html`<section><h1>Not found</h1><p><a href=${link("/tasks")}>Back to the tasks</a></p></section>`;
}

function App() {
  const [route, setRoute] = useState(parseHash);
  const [signedIn, setSignedIn] = useState(() => !!currentSession());
  useEffect(() => {
    const onHash = () => setRoute(parseHash());
    const onUnauthorized = () => {
      signOut();
      setSignedIn(false);
    };
    window.addEventListener("hashchange", onHash);
    window.addEventListener("taskhub:unauthorized", onUnauthorized);
    return () => {
      window.removeEventListener("hashchange", onHash);
      window.removeEventListener("taskhub:unauthorized", onUnauthorized);
    };
  }, []);
  if (!signedIn) return html`<${SignIn} onSignedIn=${() => setSignedIn(true)} />`;
  const me = identity();
  const section = `/${route.path.split("/").filter(Boolean)[0] || "tasks"}`;
  return html`<div class="shell">
    <header class="top">
      <a class="brand" href=${link("/tasks")}>taskhub</a>
      <nav>
        ${NAV.map(([path, label]) => html`<a class=${section === path ? "active" : ""} href=${link(path)}>${label}</a>`)}
      </nav>
      <span class="who" data-testid="who">
        ${me.username} · ${me.brand.name || "brand"} ${me.brand.id} · <strong>${me.brand.role}</strong>
        <button
          class="small"
          onClick=${() => {
            signOut();
            setSignedIn(false);
          }}
        >
          Sign out
        </button>
      </span>
    </header>
    <main><${Page} route=${route} /></main>
  </div>`;
}

adoptTokenFromLink();
render(html`<${App} />`, document.getElementById("app"));
