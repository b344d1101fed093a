// Parses AsyncAPI documents with the official parser; exits 1 if any has a diagnostic of severity
// error (warnings and hints are printed). Usage: node tools/asyncapi/validate.mjs docs/asyncapi.yaml [...]
import { resolve } from 'node:path';
import parserPackage from '@asyncapi/parser';

const { Parser, fromFile, DiagnosticSeverity } = parserPackage;
const SEVERITY = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([name, code]) => [code, name]));
const parser = new Parser();

let rejected = 0;
for (const path of (process.argv.length > 2 ? process.argv.slice(2) : ['docs/asyncapi.yaml']).map((p) => resolve(p))) {
  const { document, diagnostics } = await fromFile(parser, path).parse();
  for (const d of diagnostics) {
    const where = d.path.length ? d.path.join('.') : '(document)';
    console.log(`${path}: ${SEVERITY[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
  if (errors || document === undefined) {
    rejected += 1;
    console.log(`REJECTED ${path}: ${errors} error(s)`);
  } else {
    console.log(`ACCEPTED ${path}: AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
      `${document.operations().length} operations, ${document.allMessages().length} messages, ` +
      `${diagnostics.length} warning(s) or hint(s)`);
  }
}
process.exit(rejected ? 1 : 0);
