// Schedules: periodic tasks, cron jobs (next runs, run history, toggle, run now) and calendars
// with their events.

import { useState } from "../vendor/preact-htm.module.js";
import { can, get, patch, post } from "../api.js";
import { Loading, Notice, Status, Table, When, html, link, parseJsonObject, useAction, useLoad } from "../ui.js";

const BASE = "/tasks/scheduled";
const TABS = [
  ["periodic", "Periodic tasks"],
  ["cron", "Cron jobs"],
  ["calendars", "Calendars"],
];

export function SchedulesPage({ params, navigate }) {
  const tab = params.tab || "periodic";
  return html`<section>
    <header class="page-head"><h1>Schedules</h1></header>
    <nav class="tabs">
      ${TABS.map(
        ([name, label]) =>
          html`<a class=${name === tab ? "active" : ""} href=${link(`/schedules?tab=${name}`)}>${label}</a>`,
      )}
    </nav>
    ${tab === "periodic" ? html`<${PeriodicTasks} />` : null}
    ${tab === "cron" ? html`<${CronJobs} />` : null}
    ${tab === "calendars" ? html`<${Calendars} params=${params} navigate=${navigate} />` : null}
  </section>`;
}

function Runs({ path }) {
  const runs = useLoad(() => get(path, { page_size: 10 }), [path], { every: 5000 });
  if (!runs.data) return html`<${Loading} state=${runs} />`;
  return html`<${Table}
    testid="runs"
    rows=${runs.data.results}
    empty="No run yet."
    columns=${[
      ["Planned", (r) => html`<${When} value=${r.planned_time} />`],
      ["Fired", (r) => html`<${When} value=${r.fired_at} />`],
      ["Trigger", (r) => r.trigger],
      ["Status", (r) => html`<${Status} value=${r.status} />`],
      ["Task", (r) => (r.task ? html`<a href=${link(`/tasks/${r.task}`)}>${r.task_id || r.task}</a>` : "-")],
      ["Duration", (r) => (r.duration_seconds == null ? "-" : `${r.duration_seconds} s`)],
      ["Start delay", (r) => (r.start_delay_seconds == null ? "-" : `${r.start_delay_seconds} s`)],
      ["Note", (r) => r.note],
    ]}
  />`;
}

function PeriodicTasks() {
  const list = useLoad(() => get(`${BASE}/periodic-tasks/`, { page_size: 100 }), [], { every: 5000 });
  const action = useAction();
  const [open, setOpen] = useState(null);
  const act = (fn, message) => action.run(fn, message).then(list.reload);
  const operator = can("operator");
  return html`<div>
    ${operator ? html`<${NewPeriodicTask} onCreated=${list.reload} />` : null}
    <${Notice} action=${action} />
    <${Loading} state=${list} />
    ${list.data
      ? html`<${Table}
          testid="periodic-tasks"
          rows=${list.data.results}
          empty="No periodic task."
          rowProps=${(s) => ({ "data-schedule-id": s.id })}
          columns=${[
            ["Id", (s) => html`<button class="small" title="run history" onClick=${() => setOpen(open === s.id ? null : s.id)}>${s.id}</button>`],
            ["Type", (s) => s.task_type],
            ["Cron", (s) => html`<code>${s.cron_expression}</code>`],
            ["Zone", (s) => s.timezone],
            ["Active", (s) => (s.is_active ? "yes" : "no")],
            ["Next run", (s) => html`<${When} value=${s.next_run_at} />`],
            ["Last run", (s) => html`<${When} value=${s.last_run_at} /> ${s.last_run_status ? html`<${Status} value=${s.last_run_status} />` : null}`],
            ["Runs", (s) => `${s.executions_count}${s.max_executions ? ` of ${s.max_executions}` : ""}`],
            [
              "",
              (s) =>
                operator
                  ? html`<span class="buttons">
                      <button class="small" onClick=${() => act(() => post(`${BASE}/periodic-tasks/${s.id}/toggle/`), s.is_active ? "Switched off." : "Switched on.")}>
                        ${s.is_active ? "Turn off" : "Turn on"}
                      </button>
                      <button class="small" onClick=${() => act(() => post(`${BASE}/periodic-tasks/${s.id}/execute-now/`), (r) => `Started task ${r.task.id}.`)}>
                        Run now
                      </button>
                    </span>`
                  : null,
            ],
          ]}
        />`
      : null}
    ${open ? html`<h2>Runs of periodic task ${open}</h2><${Runs} path=${`${BASE}/periodic-tasks/${open}/runs/`} />` : null}
  </div>`;
}

function NewPeriodicTask({ onCreated }) {
  const [show, setShow] = useState(false);
  const [form, setForm] = useState({ task_type: "", cron_expression: "*/5 * * * *", timezone: "UTC", context: "" });
  const action = useAction();
  const set = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });
  if (!show) return html`<p><button class="primary" onClick=${() => setShow(true)}>New periodic task</button></p>`;
  const submit = async (e) => {
    e.preventDefault();
    const created = await action.run(
      () =>
        post(`${BASE}/periodic-tasks/`, {
          task_type: form.task_type.trim(),
          cron_expression: form.cron_expression,
          timezone: form.timezone,
          context_data: parseJsonObject(form.context, "Context"),
        }),
      (r) => `Created periodic task ${r.id}; next run ${r.next_run_at}.`,
    );
    if (created) onCreated();
  };
  return html`<form class="card" onSubmit=${submit}>
    <h2>New periodic task</h2>
    <label>Type <input required value=${form.task_type} onInput=${set("task_type")} placeholder="example.noop" /></label>
    <label>Cron <input required value=${form.cron_expression} onInput=${set("cron_expression")} /></label>
    <label>Time zone <input required value=${form.timezone} onInput=${set("timezone")} /></label>
    <label>Context (JSON object) <textarea rows="2" onInput=${set("context")}>${form.context}</textarea></label>
    <${Notice} action=${action} />
    <div class="buttons">
      <button class="primary" type="submit">Create</button>
      <button type="button" onClick=${() => setShow(false)}>Close</button>
    </div>
  </form>`;
}

function CronJobs() {
  const list = useLoad(() => get(`${BASE}/cron-jobs/`, { page_size: 100 }), [], { every: 5000 });
  const action = useAction();
  const [open, setOpen] = useState(null);
  const act = (fn, message) => action.run(fn, message).then(list.reload);
  const operator = can("operator");
  return html`<div>
    <${Notice} action=${action} />
    <${Loading} state=${list} />
    ${list.data
      ? html`<${Table}
          testid="cron-jobs"
          rows=${list.data.results}
          empty="No cron job."
          columns=${[
            ["Name", (c) => html`<button class="small" title="run history" onClick=${() => setOpen(open === c.id ? null : c.id)}>${c.name}</button>`],
            ["Type", (c) => c.task_type],
            ["Frequency", (c) => (c.frequency === "custom" ? html`<code>${c.custom_cron}</code>` : c.frequency)],
            ["Zone", (c) => c.timezone],
            ["Active", (c) => (c.is_active ? "yes" : "no")],
            ["Next run", (c) => html`<${When} value=${c.next_run_at} />`],
            ["Last run", (c) => html`<${When} value=${c.last_execution_at} />`],
            ["Runs (ok / failed)", (c) => `${c.total_executions} (${c.successful_executions} / ${c.failed_executions})`],
            [
              "",
              (c) =>
                operator
                  ? html`<span class="buttons">
                      <button class="small" onClick=${() => act(() => patch(`${BASE}/cron-jobs/${c.id}/`, { is_active: !c.is_active }), c.is_active ? "Switched off." : "Switched on.")}>
                        ${c.is_active ? "Turn off" : "Turn on"}
                      </button>
                      <button class="small" onClick=${() => act(() => post(`${BASE}/cron-jobs/${c.id}/execute/`), (r) => `Started task ${r.task.id}.`)}>
                        Run now
                      </button>
                    </span>`
                  : null,
            ],
          ]}
        />`
      : null}
    ${open ? html`<h2>Runs</h2><${Runs} path=${`${BASE}/cron-jobs/${open}/runs/`} />` : null}
  </div>`;
}

function Calendars({ params, navigate }) {
  const list = useLoad(() => get(`${BASE}/calendars/`, { page_size: 100 }), []);
  const selected = params.calendar ? Number(params.calendar) : null;
  return html`<div>
    <${Loading} state=${list} />
    ${list.data
      ? html`<${Table}
          testid="calendars"
          rows=${list.data.results}
          empty="No calendar."
          columns=${[
            ["Name", (c) => html`<span class="swatch" style=${{ background: c.color }}></span> <a href=${link(`/schedules?tab=calendars&calendar=${c.id}`)}>${c.name}</a>`],
            ["Active", (c) => (c.is_active ? "yes" : "no")],
            ["Zone", (c) => c.default_timezone],
            ["Schedules", (c) => (c.periodic_tasks || []).length],
            ["Excluded dates", (c) => (c.excluded_dates || []).map((d) => (typeof d === "string" ? d : `${d.start}…${d.end}`)).join(", ")],
          ]}
        />`
      : null}
    ${selected ? html`<${CalendarEvents} id=${selected} navigate=${navigate} />` : null}
  </div>`;
}

function CalendarEvents({ id }) {
  const [days, setDays] = useState(7);
  const events = useLoad(() => {
    const start = new Date();
    const end = new Date(start.getTime() + days * 86400000);
    return get(`${BASE}/calendars/${id}/events/`, { start: start.toISOString(), end: end.toISOString() });
  }, [id, days]);
  const byDay = {};
  for (const event of (events.data && events.data.events) || []) {
    const day = new Date(event.scheduled_at).toLocaleDateString();
    (byDay[day] = byDay[day] || []).push(event);
  }
  return html`<div class="card" data-testid="calendar-events">
    <h2>
      ${events.data ? events.data.calendar_name : "Calendar"}: next
      <select value=${days} onChange=${(e) => setDays(Number(e.currentTarget.value))}>
        ${[7, 14, 31].map((d) => html`<option value=${d}>${d} days</option>`)}
      </select>
    </h2>
    <${Loading} state=${events} />
    ${events.data && events.data.total_events === 0 ? html`<p class="muted">Nothing fires in this window.</p>` : null}
    <div class="agenda">
      ${Object.entries(byDay).map(
        ([day, list]) => html`<div class="agenda-day">
          <h3>${day}</h3>
          <ul>
            ${list.map(
              (e) => html`<li>
                <time>${new Date(e.scheduled_at).toLocaleTimeString()}</time> ${e.task_type}
                <span class="muted">${e.description}</span>
              </li>`,
            )}
          </ul>
        </div>`,
      )}
    </div>
  </div>`;
}
