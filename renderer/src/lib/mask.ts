// The Edit view's mask as the painter holds it: RGBA pixels at up to MAX_MASK_SIDE on the photo's
// long side, alpha = how much to edit (255 painted, 0 kept). Helpers turn it into the PNG the
// engine reads (white = edit, via alpha) and load the automatic mask (a grey PNG) into it.
export interface MaskSnapshot {
  width: number;
  height: number;
  rgba: Uint8ClampedArray<ArrayBuffer>;
}

export const MAX_MASK_SIDE = 2048;
const PAINT = [255, 64, 64] as const;

/** The painter's canvas size for a photo: its own size, or scaled so the long side is 2048. */
export function maskSize(width: number, height: number): { width: number; height: number } {
  const scale = Math.min(1, MAX_MASK_SIDE / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

/** Share of the mask painted (alpha ≥ 128). */
export function coverage(mask: MaskSnapshot | null | undefined): number {
  if (!mask) return 0;
  let on = 0;
  for (let i = 3; i < mask.rgba.length; i += 4) if ((mask.rgba[i] as number) >= 128) on += 1;
  return on / (mask.width * mask.height);
}

/** A grey mask (white = edit, as the engine writes it) as painter pixels of the given size. */
export function snapshotFromGrey(
  grey: Uint8ClampedArray | Uint8Array,
  width: number,
  height: number,
  channels = 4,
): MaskSnapshot {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    rgba[4 * p] = PAINT[0];
    rgba[4 * p + 1] = PAINT[1];
    rgba[4 * p + 2] = PAINT[2];
    rgba[4 * p + 3] = grey[channels * p] as number;
  }
  return { width, height, rgba };
}

/** Loads an image (a retrace:// URL, served with CORS to the app) into painter pixels. */
export async function loadMask(url: string, width: number, height: number): Promise<MaskSnapshot> {
  const img = new Image();
  img.crossOrigin = 'anonymous';
  img.src = url;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new Error('no 2D canvas');
  ctx.drawImage(img, 0, 0, width, height);
  return snapshotFromGrey(ctx.getImageData(0, 0, width, height).data, width, height);
}

/** The PNG data URL `files:saveMask` takes (the painted alpha is the mask). */
export function maskDataUrl(mask: MaskSnapshot): string {
  const canvas = document.createElement('canvas');
  canvas.width = mask.width;
  canvas.height = mask.height;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('no 2D canvas');
  ctx.putImageData(new ImageData(new Uint8ClampedArray(mask.rgba), mask.width, mask.height), 0, 0);
  return canvas.toDataURL('image/png');
}
