/**
 * The blessed screen and its boxes. Nothing here knows the state: boxes are created once and the
 * views (views/*.ts) set their content on every render. Keys are not bound to widgets; the
 * controller reads every keypress from the screen, so focus lives in the state, not in blessed.
 */
import blessed from 'blessed';

export interface Layout {
  screen: blessed.Widgets.Screen;
  status: blessed.Widgets.BoxElement;
  modules: blessed.Widgets.BoxElement;
  main: blessed.Widgets.BoxElement;
  log: blessed.Widgets.BoxElement;
  repl: blessed.Widgets.BoxElement;
  hint: blessed.Widgets.BoxElement;
  popup: blessed.Widgets.BoxElement;
}

const LOG_HEIGHT = 9;
const MODULES_WIDTH = 34;

function pane(parent: blessed.Widgets.Screen, opts: blessed.Widgets.BoxOptions): blessed.Widgets.BoxElement {
  return blessed.box({ parent, tags: true, border: { type: 'line' }, style: { border: { fg: 'white' } }, wrap: false, ...opts });
}

/** Create the screen and every pane; `withRepl` splits the bottom row between the event log and a REPL. */
export function createLayout(title: string, withRepl: boolean): Layout {
  const screen = blessed.screen({ smartCSR: true, fullUnicode: true, title, warnings: false, autoPadding: true });
  // With a UTF-8 locale draw box lines as Unicode; terminfo ACS output does not survive every
  // terminal multiplexer (tmux shows raw "lqqk").
  const tput = (screen as unknown as { tput: { unicode?: boolean; brokenACS?: boolean } }).tput;
  if (tput.unicode) tput.brokenACS = true;
  const status = blessed.box({ parent: screen, top: 0, left: 0, width: '100%', height: 1, tags: true, style: { fg: 'black', bg: 'cyan' } });
  const modules = pane(screen, { top: 1, left: 0, width: MODULES_WIDTH, bottom: LOG_HEIGHT + 1, label: ' Modules ' });
  const main = pane(screen, { top: 1, left: MODULES_WIDTH, right: 0, bottom: LOG_HEIGHT + 1, label: ' Source ' });
  const log = pane(screen, { bottom: 1, left: 0, width: withRepl ? '50%' : '100%', height: LOG_HEIGHT, label: ' Events ' });
  const repl = pane(screen, { bottom: 1, left: '50%', right: 0, height: LOG_HEIGHT, label: ' REPL ', hidden: !withRepl });
  const hint = blessed.box({ parent: screen, bottom: 0, left: 0, width: '100%', height: 1, tags: true });
  const popup = blessed.box({
    parent: screen,
    top: 'center',
    left: 'center',
    width: '70%',
    height: '60%',
    tags: true,
    hidden: true,
    border: { type: 'line' },
    style: { border: { fg: 'yellow' }, bg: 'black' },
    wrap: true,
  });
  return { screen, status, modules, main, log, repl, hint, popup };
}

/** Lines that fit inside a bordered box. */
export function innerHeight(box: blessed.Widgets.BoxElement): number {
  return Math.max(1, (box.height as number) - 2);
}
