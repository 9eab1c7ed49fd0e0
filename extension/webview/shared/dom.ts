/** Small DOM helpers shared by the panels (no innerHTML with data: text is always set as text). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}

export function icon(name: string): HTMLElement {
  return el('span', { class: `codicon codicon-${name}`, 'aria-hidden': 'true' });
}

export function mount(...children: Node[]): void {
  const app = document.getElementById('app')!;
  app.replaceChildren(...children);
}

export function notice(kind: 'info' | 'error', text: string): HTMLElement {
  return el('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, icon(kind === 'error' ? 'error' : 'info'), ` ${text}`);
}

/**
 * `fn` coalesced to one run on the next animation frame, however often the returned function is
 * called before then (views redraw once per frame, not once per change).
 */
export function onNextFrame(fn: () => void): () => void {
  let frame = 0;
  return () => {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      fn();
    });
  };
}

/** Sizes a canvas to `width` x `height` CSS pixels, its bitmap at the screen's pixel ratio (sharp on HiDPI). */
export function sizeCanvas(canvas: HTMLCanvasElement, width: number, height: number): void {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
}
