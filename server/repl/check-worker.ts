/**
 * Worker thread that type-checks REPL input against the live program.
 *
 * Holds one TypeScript LanguageService over the project (its tsconfig, sources read from disk) plus
 * an overlay of in-memory files: the prelude that types `mod(id)`, one virtual file per session
 * (accumulated declarations + the new input) and the sources of patched modules at the session's
 * generation. Only the session file's diagnostics that fall inside the new input are returned.
 * It runs off the main thread because a cold check takes seconds and must not stall the host.
 */
import { parentPort } from 'node:worker_threads';
import * as ts from 'typescript';
import type { CheckReply, CheckRequest } from './check-protocol';
import type { Diagnostic, DiagnosticCategory } from '../../shared/patch';

/** TS codes that only say "top-level await needs an ES module target"; the REPL runs it anyway. */
const IGNORED = new Set([1375, 1378, 1431, 1432]);

const CATEGORY: Record<ts.DiagnosticCategory, DiagnosticCategory> = {
  [ts.DiagnosticCategory.Warning]: 'warning',
  [ts.DiagnosticCategory.Error]: 'error',
  [ts.DiagnosticCategory.Suggestion]: 'suggestion',
  [ts.DiagnosticCategory.Message]: 'message',
};

interface Overlay {
  text: string;
  version: string;
}

let root = '';
let options: ts.CompilerOptions = {};
const overlay = new Map<string, Overlay>();
let service: ts.LanguageService | undefined;

function compilerOptions(projectRoot: string): ts.CompilerOptions {
  const base: ts.CompilerOptions = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, strict: true, esModuleInterop: true, skipLibCheck: true };
  const file = ts.findConfigFile(projectRoot, ts.sys.fileExists, 'tsconfig.json');
  let parsed: ts.CompilerOptions = {};
  if (file && file.startsWith(projectRoot)) {
    const cfg = ts.getParsedCommandLineOfConfigFile(file, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
    if (cfg) parsed = cfg.options;
  }
  // The REPL files live at the root, outside rootDir, and nothing is emitted from this service.
  const { rootDir: _r, outDir: _o, declaration: _d, composite: _c, incremental: _i, tsBuildInfoFile: _t, ...rest } = parsed;
  return { ...base, ...rest, noEmit: true, noUnusedLocals: false, noUnusedParameters: false, allowJs: rest.allowJs ?? false };
}

function createService(): ts.LanguageService {
  const host: ts.LanguageServiceHost = {
    getScriptFileNames: () => [...overlay.keys()].filter((f) => f.includes('__livepatch_repl')),
    getScriptVersion: (f) => overlay.get(f)?.version ?? '0',
    getScriptSnapshot: (f) => {
      const o = overlay.get(f);
      if (o) return ts.ScriptSnapshot.fromString(o.text);
      const text = ts.sys.readFile(f);
      return text === undefined ? undefined : ts.ScriptSnapshot.fromString(text);
    },
    getCurrentDirectory: () => root,
    getCompilationSettings: () => options,
    getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
    fileExists: (f) => overlay.has(f) || ts.sys.fileExists(f),
    readFile: (f) => overlay.get(f)?.text ?? ts.sys.readFile(f),
    readDirectory: ts.sys.readDirectory,
    directoryExists: ts.sys.directoryExists,
    getDirectories: ts.sys.getDirectories,
    realpath: ts.sys.realpath,
  };
  return ts.createLanguageService(host, ts.createDocumentRegistry());
}

function toDiagnostic(d: ts.Diagnostic, file: ts.SourceFile, inputStart: number, inputLine: number): Diagnostic {
  const out: Diagnostic = { file: '<repl>', code: d.code, category: CATEGORY[d.category], message: ts.flattenDiagnosticMessageText(d.messageText, '\n') };
  if (d.start !== undefined) {
    const pos = file.getLineAndCharacterOfPosition(Math.max(d.start, inputStart));
    out.line = pos.line - inputLine + 1;
    out.column = pos.character + 1;
  }
  return out;
}

function check(req: CheckRequest): Diagnostic[] {
  if (req.root !== root || !service) {
    root = req.root;
    options = compilerOptions(root);
    overlay.clear();
    service = createService();
  }
  for (const [f, o] of Object.entries(req.files)) {
    const cur = overlay.get(f);
    if (!cur || cur.text !== o.text) overlay.set(f, { text: o.text, version: o.version });
  }
  // Patched sources that are no longer overlaid (rollback to the deployed version) go back to disk.
  for (const f of [...overlay.keys()]) if (!f.includes('__livepatch_repl') && !(f in req.files)) overlay.delete(f);
  const sf = service.getProgram()?.getSourceFile(req.file);
  if (!sf) return [{ code: 0, category: 'error', message: 'REPL input could not be loaded for checking' }];
  const inputLine = sf.getLineAndCharacterOfPosition(req.inputStart).line;
  const all = [...service.getSyntacticDiagnostics(req.file), ...service.getSemanticDiagnostics(req.file)];
  return all
    .filter((d) => !IGNORED.has(d.code) && (d.start === undefined || (d.start >= req.inputStart && d.start < req.inputEnd)))
    .map((d) => toDiagnostic(d, sf, req.inputStart, inputLine));
}

parentPort?.on('message', (msg: CheckRequest | { type: 'drop'; file: string }) => {
  if (msg.type === 'drop') {
    overlay.delete(msg.file);
    return;
  }
  let reply: CheckReply;
  try {
    reply = { id: msg.id, ok: true, diagnostics: check(msg) };
  } catch (e) {
    reply = { id: msg.id, ok: false, message: e instanceof Error ? e.message : String(e) };
  }
  parentPort!.postMessage(reply);
});
