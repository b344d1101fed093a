// Schedules: periodic tasks, cron jobs (next runs, run history, toggle, run now) and calendars
// with their events.

import { useState } from "../vendor/preact-htm.module.js";
import { can, get, patch, post } from "../api.js";
import { LoadedTable, Loading, Notice, Status, Table, When, html, link, parseJsonObject, useAction, useLoad, yesNo } from "../ui.js";

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

// A tab's schedules, reloaded every 5 s and after each action; `open` is the one whose runs show.
function useSchedules(path) {
  const list = useLoad(() => get(path, { page_size: 100 }), [path], { every: 5000 });
  const action = useAction();
  const [open, setOpen] = useState(null);
  const act = (fn, message) => action.run(fn, message).then(list.reload);
  return { list, action, act, open, toggleOpen: (id) => setOpen(open === id ? null : id) };
}

// An operator's buttons on a schedule: switch it on or off, and run it now.
function ScheduleButtons({ active, toggle, runNow, act }) {
  return html`<span class="buttons">
    <button class="small" onClick=${() => act(toggle, active ? "Switched off." : "Switched on.")}>${active ? "Turn off" : "Turn on"}</button>
    <button class="small" onClick=${() => act(runNow, (r) => `Started task ${r.task.id}.`)}>Run now</button>
  </span>`;
}

function PeriodicTasks() {
  const { list, action, act, open, toggleOpen } = useSchedules(`${BASE}/periodic-tasks/`);
  const operator = can("operator");
  const path = (s, tail = "") => `${BASE}/periodic-tasks/${s.id}/${tail}`;
  return html`<div>
    ${operator ? html`<${NewPeriodicTask} onCreated=${list.reload} />` : null}
    <${Notice} action=${action} />
    <${LoadedTable}
      state=${list}
      testid="periodic-tasks"
      empty="No periodic task."
      rowProps=${(s) => ({ "data-schedule-id": s.id })}
      columns=${[
        ["Id", (s) => html`<button class="small" title="run history" onClick=${() => toggleOpen(s.id)}>${s.id}</button>`],
        ["Type", (s) => s.task_type],
        ["Cron", (s) => html`<code>${s.cron_expression}</code>`],
        ["Zone", (s) => s.timezone],
        ["Active", (s) => yesNo(s.is_active)],
        ["Next run", (s) => html`<${When} value=${s.next_run_at} />`],
        ["Last run", (s) => html`<${When} value=${s.last_run_at} /> ${s.last_run_status ? html`<${Status} value=${s.last_run_status} />` : null}`],
        ["Runs", (s) => `${s.executions_count}${s.max_executions ? ` of ${s.max_executions}` : ""}`],
        [
          "",
          (s) =>
            operator
              ? html`<${ScheduleButtons} active=${s.is_active} toggle=${() => post(path(s, "toggle/"))} runNow=${() => post(path(s, "execute-now/"))} act=${act} />`
              : null,
        ],
      ]}
    />
    ${open ? html`<h2>Runs of periodic task ${open}</h2><${Runs} path=${path({ id: open }, "runs/")} />` : null}
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
  const { list, action, act, open, toggleOpen } = useSchedules(`${BASE}/cron-jobs/`);
  const operator = can("operator");
  const path = (c, tail = "") => `${BASE}/cron-jobs/${c.id}/${tail}`;
  return html`<div>
    <${Notice} action=${action} />
    <${LoadedTable}
      state=${list}
      testid="cron-jobs"
      empty="No cron job."
      columns=${[
        ["Name", (c) => html`<button class="small" title="run history" onClick=${() => toggleOpen(c.id)}>${c.name}</button>`],
        ["Type", (c) => c.task_type],
        ["Frequency", (c) => (c.frequency === "custom" ? html`<code>${c.custom_cron}</code>` : c.frequency)],
        ["Zone", (c) => c.timezone],
        ["Active", (c) => yesNo(c.is_active)],
        ["Next run", (c) => html`<${When} value=${c.next_run_at} />`],
        ["Last run", (c) => html`<${When} value=${c.last_execution_at} />`],
        ["Runs (ok / failed)", (c) => `${c.total_executions} (${c.successful_executions} / ${c.failed_executions})`],
        [
          "",
          (c) =>
            operator
              ? html`<${ScheduleButtons} active=${c.is_active} toggle=${() => patch(path(c), { is_active: !c.is_active })} runNow=${() => post(path(c, "execute/"))} act=${act} />`
              : null,
        ],
      ]}
    />
    ${open ? html`<h2>Runs</h2><${Runs} path=${path({ id: open }, "runs/")} />` : null}
  </div>`;
}

function Calendars({ params, navigate }) {
  const list = useLoad(() => get(`${BASE}/calendars/`, { page_size: 100 }), []);
  const selected = params.calendar ? Number(params.calendar) : null;
  return html`<div>
    <${LoadedTable}
      state=${list}
      testid="calendars"
      empty="No calendar."
      columns=${[
        ["Name", (c) => html`<span class="swatch" style=${{ background: c.color }}></span> <a href=${link(`/schedules?tab=calendars&calendar=${c.id}`)}>${c.name}</a>`],
        ["Active", (c) => yesNo(c.is_active)],
        ["Zone", (c) => c.default_timezone],
        ["Schedules", (c) => (c.periodic_tasks || []).length],
        ["Excluded dates", (c) => (c.excluded_dates || []).map((d) => (typeof d === "string" ? d : `${d.start}…${d.end}`)).join(", ")],
      ]}
    />
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
