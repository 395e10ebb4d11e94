/**
 * HTML pieces of a run's `report.html`: tables, numbers and the page's style (both reports' base,
 * plus what a run's header and sample tables need); escaping is both reports' (analysis/_html.ts).
 *
 * @module
 */

import { BASE_STYLE, escapeHtml } from "../_html.ts";

export { escapeHtml };

/** The page's style: both reports' base, then what a run's header, notes and sample tables need. */
export const STYLE = BASE_STYLE + `table.info th{width:9em;vertical-align:top}
.status{font-weight:bold}.status-finished{color:#2ca02c}.status-running{color:#1f77b4}
.status-failed{color:#d62728}.status-interrupted{color:#ff7f0e}
.error{border:1px solid #d62728;background:#fdf0f0;padding:.5em;white-space:pre-wrap}
table.samples{width:100%}table.samples th:nth-child(2){width:45%}
table.samples td.text{white-space:pre-wrap;overflow-wrap:anywhere}
table.samples td.text div{max-height:12em;overflow:auto}
code,td.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
code{white-space:pre-wrap;overflow-wrap:anywhere;background:#f4f4f4;padding:0 .25em}
.note{max-width:52em;margin-top:-.5em}
`;

/** A table cell: already-escaped `html`, with a class when given. */
export interface Cell {
  html: string;
  class?: string;
}

/** A cell of plain text (escaped here). */
export function text(value: string, cls?: string): Cell {
  return cls === undefined ? { html: escapeHtml(value) } : { html: escapeHtml(value), class: cls };
}

/** A right-aligned cell of plain text. */
export function num(value: string): Cell {
  return text(value, "num");
}

/** An HTML table from escaped cells; `cls` is the table's class. */
export function table(header: readonly string[], rows: readonly Cell[][], cls?: string): string {
  const td = (c: Cell) => `<td${c.class === undefined ? "" : ` class="${c.class}"`}>${c.html}</td>`;
  return [
    cls === undefined ? "<table>" : `<table class="${cls}">`,
    `<tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr>`,
    ...rows.map((r) => `<tr>${r.map(td).join("")}</tr>`),
    "</table>",
  ].join("\n");
}

/** A number with at most `digits` significant digits, or an em dash for none. */
export function fmt(x: number | null | undefined, digits = 4): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-4)) return x.toExponential(digits - 1);
  return String(Number(x.toPrecision(digits)));
}

/** A fraction as a percentage with one decimal, or an em dash for none. */
export function percent(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "—" : `${(100 * x).toFixed(1)}%`;
}
