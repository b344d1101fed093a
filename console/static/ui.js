// Small pieces every page uses: loading with optional refresh, errors, tables, badges, pagination.

import { html, useCallback, useEffect, useRef, useState } from "./vendor/preact-htm.module.js";
import { ApiError } from "./api.js";

export { html };

export const FINAL = new Set(["completed", "failed", "cancelled"]);

// Loads `fn()` now, again whenever `deps` change, and every `every` ms while the page shows.
// Returns { data, error, loading, reload }.
export function useLoad(fn, deps, { every = 0 } = {}) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const data = await fn();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState((s) => ({ ...s, loading: true }));
    reload();
    if (!every) return undefined;
    const timer = setInterval(() => document.visibilityState === "visible" && reload(), every);
    return () => clearInterval(timer);
  }, [reload, every]);
  return { ...state, reload };
}

// Runs an action (a POST, a DELETE): remembers its error to show it, and its success message.
export function useAction() {
  const [state, setState] = useState({ error: null, message: null, busy: false });
  const run = useCallback(async (fn, message) => {
    setState({ error: null, message: null, busy: true });
    try {
      const result = await fn();
      setState({ error: null, message: typeof message === "function" ? message(result) : message, busy: false });
      return result;
    } catch (error) {
      setState({ error, message: null, busy: false });
      return undefined;
    }
  }, []);
  return { ...state, run, clear: () => setState({ error: null, message: null, busy: false }) };
}

export function ErrorBox({ error }) {
  if (!error) return null;
  const detail = error instanceof ApiError ? error.detail : String(error.message || error);
  const fields = error instanceof ApiError ? Object.entries(error.fieldErrors || {}) : [];
  return html`<div class="error" role="alert" data-testid="error">
    <strong>${detail}</strong>
    ${error.errorCode ? html` <code>${error.errorCode}</code>` : null}
    ${fields.length
      ? html`<ul>
          ${fields.map(([name, messages]) => html`<li><code>${name}</code>: ${[].concat(messages).join(", ")}</li>`)}
        </ul>`
      : null}
  </div>`;
}

export function Notice({ action }) {
  return html`${action.error ? html`<${ErrorBox} error=${action.error} />` : null}
  ${action.message ? html`<div class="notice" role="status" data-testid="notice">${action.message}</div>` : null}`;
}

export function Status({ value }) {
  return html`<span class=${`badge status-${value}`} data-testid="status">${value || "-"}</span>`;
}

export function Bar({ value }) {
  const pct = Math.max(0, Math.min(100, Number(value) || 0));
  return html`<span class="bar" title=${`${pct}%`}>
    <span class="bar-fill" style=${{ width: `${pct}%` }}></span>
    <span class="bar-text" data-testid="progress">${pct}%</span>
  </span>`;
}

export function When({ value }) {
  if (!value) return html`<span class="muted">-</span>`;
  const date = new Date(value);
  return html`<time datetime=${value} title=${value}>${date.toLocaleString()}</time>`;
}

export function Json({ value }) {
  if (value === null || value === undefined) return html`<span class="muted">-</span>`;
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}

export function Loading({ state }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} />`;
  if (state.loading && !state.data) return html`<p class="muted">Loading…</p>`;
  return null;
}

// A table of `columns`: [header, (row) => cell]. Rows may carry `key`.
export function Table({ columns, rows, empty = "Nothing here yet.", testid, rowProps }) {
  if (!rows || rows.length === 0) return html`<p class="muted" data-testid=${testid && `${testid}-empty`}>${empty}</p>`;
  return html`<table class="grid" data-testid=${testid}>
    <thead>
      <tr>
        ${columns.map(([header]) => html`<th>${header}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (row, index) => html`<tr key=${row.id ?? index} ...${rowProps ? rowProps(row) : {}}>
          ${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}
        </tr>`,
      )}
    </tbody>
  </table>`;
}

// A loaded list as a table: the load's state (loading, its error) and, once `state.data` is there,
// the Table of `rows(state.data)` (a page's `results` unless told).
export function LoadedTable({ state, rows = (data) => data.results, ...table }) {
  return html`<${Loading} state=${state} />
    ${state.data ? html`<${Table} rows=${rows(state.data)} ...${table} />` : null}`;
}

export function Severity({ value }) {
  return html`<span class=${`badge severity-${value}`}>${value}</span>`;
}

export const yesNo = (value) => (value ? "yes" : "no");

// A filter's select: "any" (the empty value) first, then `extra` options, then `choices`.
export function ChoiceFilter({ label, name, value, choices, onChoose, extra = null }) {
  return html`<label
    >${label}
    <select name=${name} value=${value} onChange=${(e) => onChoose(e.currentTarget.value)}>
      <option value="">any</option>
      ${extra}
      ${choices.map((c) => html`<option value=${c}>${c}</option>`)}
    </select>
  </label>`;
}

export function Pager({ page, pageSize, count, onPage }) {
  const pages = Math.max(1, Math.ceil((count || 0) / pageSize));
  return html`<div class="pager">
    <button disabled=${page <= 1} onClick=${() => onPage(page - 1)}>‹ Previous</button>
    <span>page ${page} of ${pages} · ${count ?? 0} in all</span>
    <button disabled=${page >= pages} onClick=${() => onPage(page + 1)}>Next ›</button>
  </div>`;
}

export function Fields({ rows }) {
  return html`<dl class="fields">
    ${rows.map(([label, value]) => html`<dt>${label}</dt><dd>${value ?? html`<span class="muted">-</span>`}</dd>`)}
  </dl>`;
}

export function parseJsonObject(text, name) {
  if (!text.trim()) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${name} is not valid JSON: ${error.message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${name} must be a JSON object.`);
  }
  return value;
}

export const link = (path) => `#${path}`;
