// Parses an AsyncAPI document with the official parser and fails on any diagnostic of severity
// error; warnings are printed. Usage: node tools/asyncapi/validate.mjs docs/asyncapi.yaml
import { resolve } from 'node:path';
import parserPackage from '@asyncapi/parser';

const { Parser, fromFile, DiagnosticSeverity } = parserPackage;
const SEVERITY = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([name, code]) => [code, name]));

const path = resolve(process.argv[2] ?? 'docs/asyncapi.yaml');
const { document, diagnostics } = await fromFile(new Parser(), path).parse();
for (const d of diagnostics) {
  const where = d.path.length ? d.path.join('.') : '(document)';
  console.log(`${SEVERITY[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (errors.length || document === undefined) {
  console.error(`${path}: ${errors.length} error(s); the AsyncAPI parser rejects it`);
  process.exit(1);
}
console.log(`${path}: AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
  `${document.operations().length} operations, ${document.allMessages().length} messages, ` +
  `${diagnostics.length - errors.length} warning(s)/hint(s)`);
