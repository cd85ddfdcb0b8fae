// A screen: built once, then updated in place from the state (so that
// typing is never lost to a redraw).
import type { Backend, UiError } from "../backend";
import type { State } from "../store";

export interface AppApi {
  readonly state: State;
  readonly backend: Backend;
  set(patch: Partial<State> | ((s: State) => State)): void;
  errorText(e: unknown): string;
  /** Runs a command; its error becomes the notice bar. */
  run(what: string, f: () => Promise<unknown>): Promise<void>;
  showError(e: UiError): void;
}

export interface Mounted {
  el: HTMLElement;
  update(s: State): void;
}

export type View = (app: AppApi) => Mounted;
