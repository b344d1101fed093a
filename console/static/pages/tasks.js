// Tasks: the list (filters, search, ordering, pagination, live) and one task (history, outcome,
// actions), both kept current by core's task streams, or by polling where there are none.

import { useEffect, useRef, useState } from "../vendor/preact-htm.module.js";
import { can, del, get, post, subscribeTasks } from "../api.js";
import {
  Bar,
  ChoiceFilter,
  ErrorBox,
  FINAL,
  Fields,
  Json,
  Loading,
  Notice,
  Pager,
  Status,
  Table,
  When,
  html,
  link,
  parseJsonObject,
  useAction,
  useLoad,
  yesNo,
} from "../ui.js";

const STATUSES = ["pending", "running", "paused", "retrying", "completed", "failed", "cancelled"];
const PRIORITIES = ["critical", "high", "normal", "low"];
const ORDERINGS = [
  ["-created_at", "newest first"],
  ["created_at", "oldest first"],
  ["-updated_at", "recently changed"],
  ["-priority", "priority, highest first"],
  ["status", "status"],
  ["-progress_percentage", "progress, most first"],
];
const POLL_MS = 2000;

// Keeps a page's tasks current from the tab's one stream of the brand's changes (api.js):
// `onTask` gets every change and keeps what concerns the page. Where there is no stream, the page
// polls. Returns "live", "polling" or "connecting".
function useLiveTasks({ onTask, reload, enabled = true }) {
  const [mode, setMode] = useState("connecting");
  const latest = useRef({ onTask, reload });
  latest.current = { onTask, reload }; // the subscription outlives renders: it calls the newest ones
  useEffect(() => {
    if (!enabled) return undefined;
    let timer = null;
    let subscribing = true;
    const unsubscribe = subscribeTasks({
      onTask: (task) => latest.current.onTask(task),
      onMode: (next) => {
        setMode(next);
        // the stream (re)opened after the page read its data: read once more, nothing is missed
        if (next === "live" && !subscribing) latest.current.reload();
        if (next === "polling" && !timer) {
          timer = setInterval(() => document.visibilityState === "visible" && latest.current.reload(), POLL_MS);
        }
      },
    });
    subscribing = false;
    return () => {
      unsubscribe();
      clearInterval(timer);
    };
  }, [enabled]);
  return mode;
}

// Whether a task belongs to the list as filtered (the filters the stream event can be checked on).
function matches(task, query) {
  const among = (value, list) => !list || list.split(",").includes(value);
  const status = query.status === "active" ? !FINAL.has(task.status) : among(task.status, query.status);
  return status && among(task.priority, query.priority) && among(task.task_type, query.task_type);
}

function LiveBadge({ mode }) {
  const text = { live: "live", polling: `polling every ${POLL_MS / 1000} s`, connecting: "connecting…" }[mode];
  return html`<span class=${`live live-${mode}`} data-testid="live-mode">${text}</span>`;
}

// ------------------------------------------------------------------------------------ the list

export function TasksPage({ params, navigate }) {
  const query = {
    status: params.status || "",
    priority: params.priority || "",
    task_type: params.task_type || "",
    search: params.search || "",
    ordering: params.ordering || "-created_at",
    page: Number(params.page || 1),
    page_size: Number(params.page_size || 25),
  };
  const setQuery = (changes) => {
    const next = { ...query, page: 1, ...changes };
    navigate("/tasks", Object.fromEntries(Object.entries(next).filter(([, v]) => v !== "" && v !== null)));
  };
  const list = useLoad(() => get("/tasks/", query), [JSON.stringify(query)]);
  const [rows, setRows] = useState([]);
  const rowsRef = useRef([]);
  const reloadSoon = useRef(null);
  useEffect(() => {
    rowsRef.current = (list.data && list.data.results) || [];
    setRows(rowsRef.current);
  }, [list.data]);

  const onTask = (task) => {
    if (rowsRef.current.some((row) => row.id === task.id)) {
      rowsRef.current = rowsRef.current.map((row) => (row.id === task.id ? { ...row, ...task } : row));
      setRows(rowsRef.current);
    } else if (query.page === 1 && matches(task, query) && !reloadSoon.current) {
      // a task this page does not show yet: read the page again, once for a burst of them
      reloadSoon.current = setTimeout(() => {
        reloadSoon.current = null;
        list.reload();
      }, 500);
    }
  };
  const mode = useLiveTasks({ onTask, reload: list.reload });
  useEffect(() => () => clearTimeout(reloadSoon.current), []);

  const [search, setSearch] = useState(query.search);
  return html`<section>
    <header class="page-head">
      <h1>Tasks</h1>
      <${LiveBadge} mode=${mode} />
    </header>
    ${can("operator") ? html`<${NewTask} navigate=${navigate} />` : null}
    <form
      class="filters"
      onSubmit=${(e) => {
        e.preventDefault();
        setQuery({ search });
      }}
    >
      <${ChoiceFilter}
        label="Status"
        name="status"
        value=${query.status}
        choices=${STATUSES}
        extra=${html`<option value="active">active (not final)</option>`}
        onChoose=${(status) => setQuery({ status })}
      />
      <${ChoiceFilter} label="Priority" name="priority" value=${query.priority} choices=${PRIORITIES} onChoose=${(priority) => setQuery({ priority })} />
      <label
        >Type
        <input
          name="task_type"
          value=${query.task_type}
          placeholder="example.sleep"
          onChange=${(e) => setQuery({ task_type: e.currentTarget.value.trim() })}
        />
      </label>
      <label
        >Search
        <input name="search" type="search" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} />
      </label>
      <label
        >Order
        <select
          name="ordering"
          value=${query.ordering}
          onChange=${(e) => setQuery({ ordering: e.currentTarget.value })}
        >
          ${ORDERINGS.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
        </select>
      </label>
      <button type="submit">Search</button>
    </form>
    <${Loading} state=${list} />
    ${list.data
      ? html`<${Table}
            testid="tasks"
            rows=${rows}
            empty="No task matches."
            rowProps=${(t) => ({ "data-task-id": t.id })}
            columns=${[
              ["Id", (t) => html`<a href=${link(`/tasks/${t.id}`)}>${t.id}</a>`],
              ["Type", (t) => t.task_type],
              ["Status", (t) => html`<${Status} value=${t.status} />`],
              ["Progress", (t) => html`<${Bar} value=${t.progress_percentage} />`],
              ["Priority", (t) => t.priority],
              ["Created", (t) => html`<${When} value=${t.created_at} />`],
              ["Worker", (t) => t.worker_name || html`<span class="muted">-</span>`],
              ["Description", (t) => html`<span class="clip">${t.description}</span>`],
            ]}
          />
          <${Pager}
            page=${query.page}
            pageSize=${query.page_size}
            count=${list.data.count}
            onPage=${(page) => setQuery({ page })}
          />`
      : null}
  </section>`;
}

function NewTask({ navigate }) {
  const [open, setOpen] = useState(false);
  const [form, setForm] = useState({ task_type: "", priority: "", description: "", context: "" });
  const types = useLoad(() => (open ? get("/tasks/types/") : Promise.resolve(null)), [open]);
  const action = useAction();
  const set = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });
  const submit = async (e) => {
    e.preventDefault();
    const created = await action.run(async () => {
      const body = { task_type: form.task_type.trim(), context_data: parseJsonObject(form.context, "Context") };
      if (form.priority) body.priority = form.priority;
      if (form.description) body.description = form.description;
      return post("/tasks/", body);
    });
    if (created) navigate(`/tasks/${created.id}`);
  };
  if (!open) {
    return html`<p><button class="primary" data-testid="new-task" onClick=${() => setOpen(true)}>New task</button></p>`;
  }
  return html`<form class="card new-task" onSubmit=${submit} data-testid="new-task-form">
    <h2>New task</h2>
    <label
      >Type
      <input name="task_type" list="task-types" required value=${form.task_type} onInput=${set("task_type")} />
      <datalist id="task-types">
        ${((types.data && types.data.task_types) || []).map(
          (t) => html`<option value=${t.task_type}>${t.workers} worker(s)</option>`,
        )}
      </datalist>
    </label>
    <label
      >Priority
      <select name="priority" value=${form.priority} onChange=${set("priority")}>
        <option value="">the type's default</option>
        ${PRIORITIES.map((p) => html`<option value=${p}>${p}</option>`)}
      </select>
    </label>
    <label>Description <input name="description" value=${form.description} onInput=${set("description")} /></label>
    <label
      >Context (JSON object)
      <textarea name="context_data" rows="3" placeholder='{"seconds": 3, "steps": 3}' onInput=${set("context")}>
${form.context}</textarea
      >
    </label>
    <${Notice} action=${action} />
    <div class="buttons">
      <button class="primary" type="submit" disabled=${action.busy}>Create</button>
      <button type="button" onClick=${() => setOpen(false)}>Close</button>
    </div>
  </form>`;
}

// ----------------------------------------------------------------------------------- one task

export function TaskPage({ id, navigate }) {
  const detail = useLoad(() => get(`/tasks/${id}/`), [id]);
  const [task, setTask] = useState(null);
  const action = useAction();
  const taskRef = useRef(null);
  useEffect(() => {
    taskRef.current = detail.data;
    setTask(detail.data);
  }, [detail.data]);

  const onTask = (event) => {
    if (String(event.id) !== String(id)) return;
    const before = taskRef.current;
    taskRef.current = { ...(before || {}), ...event };
    setTask(taskRef.current);
    if (!before || before.status !== event.status) detail.reload(); // the new history line
  };
  const final = task && FINAL.has(task.status);
  const mode = useLiveTasks({ onTask, reload: detail.reload, enabled: !!task && !final });

  if (!task) return html`<section><h1>Task ${id}</h1><${Loading} state=${detail} /></section>`;
  const act = (fn, message) => action.run(fn, message).then((r) => (r !== undefined ? detail.reload() : r));
  return html`<section data-testid="task-detail">
    <header class="page-head">
      <h1>Task ${task.id} <small>${task.task_type}</small></h1>
      <${Status} value=${task.status} />
      ${final ? null : html`<${LiveBadge} mode=${mode} />`}
    </header>
    <div class="buttons">
      ${can("operator") && (task.status === "failed" || task.status === "cancelled")
        ? html`<button data-testid="retry" onClick=${() => act(() => post(`/tasks/${id}/retry/`), "Retried.")}>
            Retry
          </button>`
        : null}
      ${can("operator") && !final
        ? html`<button data-testid="cancel" onClick=${() => act(() => post(`/tasks/${id}/cancel/`), "Cancelled.")}>
            Cancel
          </button>`
        : null}
      ${can("operator") && task.status !== "running"
        ? html`<button
            class="danger"
            data-testid="delete"
            onClick=${async () => {
              if (!window.confirm(`Delete task ${id}?`)) return;
              if ((await action.run(() => del(`/tasks/${id}/`))) !== undefined) navigate("/tasks");
            }}
          >
            Delete
          </button>`
        : null}
    </div>
    <${Notice} action=${action} />
    ${detail.error ? html`<${ErrorBox} error=${detail.error} />` : null}
    <div class="columns">
      <div class="card">
        <${Fields}
          rows=${[
            ["Task id", html`<code>${task.task_id}</code>`],
            ["Progress", html`<${Bar} value=${task.progress_percentage} />`],
            ["Step", task.current_step],
            ["Priority", task.priority],
            ["Queue", task.queue_name],
            ["Worker", task.worker_name],
            ["Retries", `${task.retry_count} of ${task.max_retries}`],
            ["Timeout", `${task.timeout_minutes} min`],
            ["Created", html`<${When} value=${task.created_at} /> by ${task.created_by && task.created_by.username}`],
            ["Scheduled for", task.scheduled_for && html`<${When} value=${task.scheduled_for} />`],
            ["Started", task.started_at && html`<${When} value=${task.started_at} />`],
            ["Finished", task.completed_at && html`<${When} value=${task.completed_at} />`],
            ["Description", task.description],
            ["Persistent job", task.is_resumable ? html`<a href=${link(`/jobs?base_task=${task.id}`)}>yes</a>` : "no"],
            ["Periodic", yesNo(task.is_periodic)],
          ]}
        />
      </div>
      <div class="card">
        <h2>Context</h2>
        <${Json} value=${task.context_data} />
        <h2>Result</h2>
        <div data-testid="result"><${Json} value=${task.result_data} /></div>
        ${task.error_message
          ? html`<h2>Error</h2>
              <p class="error-text" data-testid="error-message">${task.error_message}</p>`
          : null}
        ${task.error_traceback
          ? html`<details>
              <summary>Traceback (admins)</summary>
              <pre class="traceback">${task.error_traceback}</pre>
            </details>`
          : null}
        <h2>Metrics</h2>
        ${task.metrics
          ? html`<${Fields}
              rows=${[
                ["Execution time", `${task.metrics.execution_time_ms ?? "-"} ms`],
                ["Memory", `${task.metrics.memory_usage_mb ?? "-"} MB`],
                ["Cost", `$${task.metrics.cost_usd ?? 0}`],
              ]}
            />`
          : html`<p class="muted">No metrics yet.</p>`}
      </div>
    </div>
    <h2>Status history</h2>
    <${Table}
      testid="history"
      rows=${task.status_history || []}
      columns=${[
        ["When", (h) => html`<${When} value=${h.at} />`],
        ["From", (h) => h.from_status || html`<span class="muted">-</span>`],
        ["To", (h) => html`<${Status} value=${h.to_status} />`],
        ["Attempt", (h) => h.attempt],
        ["Reason", (h) => h.reason],
      ]}
    />
  </section>`;
}
