// Persistent jobs: the list, and one job with its checkpoints, state, pause, resume and restart.

import { can, get, post } from "../api.js";
import { Bar, ChoiceFilter, Fields, Json, LoadedTable, Loading, Notice, Pager, Status, Table, When, html, link, useAction, useLoad, yesNo } from "../ui.js";

const JOBS = "/tasks/persistent-jobs/persistent-jobs/";
const REFRESH_MS = 2000;
const JOB_STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"];

export function JobsPage({ params, navigate }) {
  const query = {
    status: params.status || "",
    base_task: params.base_task || "",
    can_resume: params.can_resume || "",
    ordering: "-created_at",
    page: Number(params.page || 1),
    page_size: 25,
  };
  const setQuery = (changes) =>
    navigate("/jobs", Object.fromEntries(Object.entries({ ...query, page: 1, ...changes }).filter(([, v]) => v !== "")));
  const jobs = useLoad(() => get(JOBS, query), [JSON.stringify(query)], { every: REFRESH_MS });
  return html`<section>
    <header class="page-head"><h1>Persistent jobs</h1></header>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <${ChoiceFilter} label="Status" name="status" value=${query.status} choices=${JOB_STATUSES} onChoose=${(status) => setQuery({ status })} />
      <label class="inline"
        ><input
          type="checkbox"
          checked=${query.can_resume === "true"}
          onChange=${(e) => setQuery({ can_resume: e.currentTarget.checked ? "true" : "" })}
        />
        resumable only</label
      >
      ${query.base_task ? html`<span>task ${query.base_task} <a href=${link("/jobs")}>(all)</a></span>` : null}
    </form>
    <${LoadedTable}
      state=${jobs}
      testid="jobs"
      empty="No persistent job."
      rowProps=${(j) => ({ "data-job-id": j.id, "data-task-id": j.base_task && j.base_task.id })}
      columns=${[
        ["Job", (j) => html`<a href=${link(`/jobs/${j.id}`)}>${j.id}</a>`],
        ["Task", (j) => html`<a href=${link(`/tasks/${j.base_task.id}`)}>${j.base_task.task_id}</a>`],
        ["Type", (j) => j.base_task.task_type],
        ["Status", (j) => html`<${Status} value=${j.status} />`],
        ["Progress", (j) => html`<${Bar} value=${j.progress_percentage} />`],
        ["Step", (j) => j.current_step],
        ["Checkpoints", (j) => j.checkpoints_count],
        ["Last checkpoint", (j) => html`<${When} value=${j.last_checkpoint_at} />`],
        ["Resumable", (j) => yesNo(j.can_resume)],
      ]}
    />
    ${jobs.data ? html`<${Pager} page=${query.page} pageSize=${25} count=${jobs.data.count} onPage=${(page) => setQuery({ page })} />` : null}
  </section>`;
}

export function JobPage({ id }) {
  const job = useLoad(() => get(`${JOBS}${id}/`), [id], { every: REFRESH_MS });
  const action = useAction();
  if (!job.data) return html`<section><h1>Job ${id}</h1><${Loading} state=${job} /></section>`;
  const j = job.data;
  const act = (path, body, message) => action.run(() => post(`${JOBS}${id}/${path}/`, body), message).then(job.reload);
  const operator = can("operator");
  return html`<section data-testid="job-detail">
    <header class="page-head">
      <h1>Job ${j.id} <small>${j.base_task.task_type}</small></h1>
      <${Status} value=${j.status} />
      ${j.pause_requested && j.status === "running" ? html`<span class="muted">pausing at the next checkpoint…</span>` : null}
    </header>
    ${operator
      ? html`<div class="buttons">
          ${j.status === "running"
            ? html`<button data-testid="pause" onClick=${() => act("pause", {}, (r) => r.message || "Pausing.")}>Pause</button>`
            : null}
          ${j.can_resume && j.status !== "running" && j.status !== "completed"
            ? html`<button data-testid="resume" onClick=${() => act("resume", {}, (r) => r.message || "Resumed.")}>
                Resume
              </button>`
            : null}
          <button
            data-testid="restart"
            onClick=${() =>
              window.confirm("Run this job again from its start?") &&
              act("restart", { preserve_checkpoints: true, reset_progress: true }, (r) => r.message || "Restarted.")}
          >
            Restart
          </button>
        </div>`
      : null}
    <${Notice} action=${action} />
    <div class="columns">
      <div class="card">
        <${Fields}
          rows=${[
            ["Task", html`<a href=${link(`/tasks/${j.base_task.id}`)}>${j.base_task.task_id}</a> (${j.base_task.status})`],
            ["Progress", html`<${Bar} value=${j.progress_percentage} />`],
            ["Step", j.current_step],
            ["Steps", j.total_steps ? `${j.completed_steps} of ${j.total_steps}` : j.completed_steps],
            ["Can resume", j.can_resume ? `yes${j.resume_from_step ? `, from ${j.resume_from_step}` : ""}` : "no"],
            ["Interrupted because", j.interruption_reason],
            ["Resumes / restarts", `${j.resume_count ?? 0} / ${j.restart_count ?? 0}`],
            ["Expected end", j.estimated_completion && html`<${When} value=${j.estimated_completion} />`],
            ["Created", html`<${When} value=${j.created_at} />`],
          ]}
        />
      </div>
      <div class="card">
        <h2>Job data</h2>
        <${Json} value=${j.job_data} />
        ${j.job_state
          ? html`<h2>State</h2>
              <${Json} value=${j.job_state.state_data} />
              ${j.job_state.last_error_message ? html`<p class="error-text">${j.job_state.last_error_message}</p>` : null}`
          : null}
      </div>
    </div>
    <h2>Newest checkpoints (${j.checkpoints_count})</h2>
    <${Table}
      testid="checkpoints"
      rows=${j.newest_checkpoints || []}
      empty="No checkpoint yet."
      columns=${[
        ["Id", (c) => c.id],
        ["Step", (c) => c.step_name],
        ["Saved", (c) => html`<${When} value=${c.created_at} />`],
        ["Size", (c) => `${c.data_size_bytes} B${c.is_compressed ? " (compressed)" : ""}`],
        ["Recovery point", (c) => yesNo(c.is_recovery_point)],
        [
          "",
          (c) =>
            operator && c.is_recovery_point && j.status !== "running" && j.status !== "completed"
              ? html`<button class="small" onClick=${() => act("resume", { from_checkpoint: c.id }, (r) => r.message)}>
                  Resume from here
                </button>`
              : null,
        ],
      ]}
    />
  </section>`;
}
