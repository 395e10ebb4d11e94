/**
 * HTML pieces of a run's `report.html`: escaping, tables and the page's style (the comparison
 * report's, plus what a run's header and sample tables need).
 *
 * @module
 */

/** The comparison report's style (analysis/compare/report.ts), then the run report's additions. */
export const STYLE = `body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f4f4f4}td.num{text-align:right}.muted{color:#777}
figure{margin:1em 0}pre{background:#f8f8f8;padding:.5em}
figure svg{max-width:100%;height:auto}
table.info th{width:9em;vertical-align:top}
.status{font-weight:bold}.status-finished{color:#2ca02c}.status-running{color:#1f77b4}
.status-failed{color:#d62728}.status-interrupted{color:#ff7f0e}
.error{border:1px solid #d62728;background:#fdf0f0;padding:.5em;white-space:pre-wrap}
table.samples{width:100%}table.samples th:nth-child(2){width:45%}
table.samples td.text{white-space:pre-wrap;overflow-wrap:anywhere}
table.samples td.text div{max-height:12em;overflow:auto}
code,td.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
code{white-space:pre-wrap;overflow-wrap:anywhere;background:#f4f4f4;padding:0 .25em}
`;

/** C0 control characters but tab, line feed and carriage return. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;

/**
 * `text` safe as HTML text or as a double- or single-quoted attribute value; control characters
 * become their visible pictures (U+2400…), so a completion's stray bytes show instead of vanishing.
 */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#39;")
    .replace(
      CONTROL,
      (c) => String.fromCodePoint(c === "\u007f" ? 0x2421 : 0x2400 + c.charCodeAt(0)),
    );
}

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
