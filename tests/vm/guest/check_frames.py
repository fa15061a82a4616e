#!/usr/bin/env python3
"""Checks camera frames against livetalk's test pattern (vcam/src/test_pattern.rs) composed onto
its backdrop at W x H: 8 colour bars, a strip of 8 blocks spelling the frame number, backdrop.

  check_frames.py raw FILE FORMAT W H [--min-frames N] [--progress]
      FORMAT yuyv|i420: every frame in FILE must show the bars and backdrop in BT.601 limited
      range (each sample within 2 of the exact value); --progress: frame numbers never go back,
      at least a quarter of the frames are distinct, and each repeats at most 4 times (16 fps into 30 fps shows each once or
      twice) except at the start, where a resuming engine may take up to 30 frames (1 s), showing
      the sink's opening black frame, the backdrop alone or its last frame meanwhile.
  check_frames.py rgb FILE W H TOLERANCE       the last rgb24 frame in FILE (e.g. from ffmpeg)
  check_frames.py points W H                   JSON sample points for the browser page
  check_frames.py pixels W H TOLERANCE JSON    the browser's RGB samples at those points
Prints one line saying what was checked; exits 1 on any mismatch."""
import json
import sys

BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
        (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]
BACKDROP = (30, 36, 48)


def geometry(w, h):
    """The 512x512 pattern scaled to fit and centred, as vcam's Composer places it."""
    s = min(w / 512, h / 512)
    dw, dh = round(512 * s), round(512 * s)
    return s, (w - dw) // 2, (h - dh) // 2


def points(w, h):
    """(x, y, what) sample points: bar centres, number-block centres, backdrop."""
    s, left, top = geometry(w, h)
    pts = [(int(left + (64 * k + 32) * s), int(top + 224 * s), ('bar', k)) for k in range(8)]
    pts += [(int(left + (64 * k + 32) * s), int(top + 480 * s), ('bit', 7 - k)) for k in range(8)]
    if left >= 8:
        pts.append((left // 2, h // 2, ('backdrop', 0)))
    return pts


def rgb_to_yuv(r, g, b):
    """BT.601 limited range, the exact (unrounded) values."""
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return y, u, v


def yuv_at(frame, fmt, w, h, x, y):
    if fmt == 'yuyv':
        row = y * w * 2
        pair = row + (x // 2) * 4
        return frame[row + x * 2], frame[pair + 1], frame[pair + 3]
    cw = w // 2
    u0, v0 = w * h, w * h + cw * (h // 2)
    c = (y // 2) * cw + x // 2
    return frame[y * w + x], frame[u0 + c], frame[v0 + c]


def expected_rgb(what):
    kind, k = what
    return BARS[k] if kind == 'bar' else BACKDROP


def check_raw(path, fmt, w, h, min_frames, progress):
    size = w * h * 2 if fmt == 'yuyv' else w * h * 3 // 2
    data = open(path, 'rb').read()
    frames = [data[i * size:(i + 1) * size] for i in range(len(data) // size)]
    errors = []
    if len(frames) < min_frames:
        errors.append(f'{len(frames)} frames, wanted at least {min_frames}')
    numbers = []
    leading_idle = 0
    for n, frame in enumerate(frames):
        # At the start only: the black frame the sink writes when it opens the device, and the
        # backdrop alone (the camera's idle picture) while a paused engine wakes up.
        x0, y0, _ = points(w, h)[0]
        first = yuv_at(frame, fmt, w, h, x0, y0)
        if n == leading_idle and any(all(abs(g - e) <= 2 for g, e in zip(first, idle))
                                     for idle in (rgb_to_yuv(*BACKDROP), (16, 128, 128))):
            leading_idle += 1
            continue
        number = 0
        for x, y, what in points(w, h):
            got = yuv_at(frame, fmt, w, h, x, y)
            if what[0] == 'bit':
                number |= (got[0] > 128) << what[1]
                continue
            want = rgb_to_yuv(*expected_rgb(what))
            if any(abs(g - e) > 2 for g, e in zip(got, want)):
                errors.append(f'frame {n} {what} at ({x},{y}): YUV {got}, want {tuple(round(v) for v in want)}')
        numbers.append(number)
    if progress and frames:
        # 16 fps into 30 fps: each engine frame shows once or twice (a few more under load).
        steps = [(b - a) % 256 for a, b in zip(numbers, numbers[1:])]
        runs, run = [], 1
        for step in steps:
            if step == 0:
                run += 1
            else:
                runs.append(run)
                run = 1
        runs.append(run)
        # Forward steps only (numbers wrap at 256). A slow reader or an emulated, loaded guest
        # may skip engine frames (the bus keeps only the latest); going back never happens.
        if any(step > 64 for step in steps):
            errors.append(f'frame numbers go back: {numbers}')
        if len(set(numbers)) < len(numbers) // 4:
            errors.append(f'too few distinct engine frames: {numbers}')
        # The first run may be longer: a paused engine wakes up when the reader arrives, and
        # the camera shows the last frame meanwhile.
        if max(runs[1:], default=0) > 4:
            errors.append(f'a frame repeated {max(runs[1:])} times (stalled engine or pump?): {numbers}')
        if runs[0] + leading_idle > 30:
            errors.append(f'the engine took {runs[0] + leading_idle} frames to resume: {numbers}')
    if leading_idle and (leading_idle > 30 or not numbers):
        errors.append(f'{leading_idle} black/backdrop-only frames before the pattern')
    print(f'{path}: {len(frames)} {fmt} {w}x{h} frames ({leading_idle} black/backdrop-only first), numbers {numbers[:40]}{"..." if len(numbers) > 40 else ""}, '
          f'{len(errors)} errors')
    for e in errors[:10]:
        print('  ' + e)
    return not errors


def check_pixels(samples, w, h, tolerance, source):
    errors = []
    for (x, y, what), got in zip(points(w, h), samples):
        if what[0] == 'bit':
            continue
        want = expected_rgb(what)
        if any(abs(g - e) > tolerance for g, e in zip(got, want)):
            errors.append(f'{what} at ({x},{y}): RGB {tuple(got)}, want {want}')
    print(f'{source}: {len(samples)} RGB samples at {w}x{h}, tolerance {tolerance}, {len(errors)} errors')
    for e in errors:
        print('  ' + e)
    return not errors and len(samples) == len(points(w, h))


def main(argv):
    mode = argv[1]
    if mode == 'raw':
        path, fmt, w, h = argv[2], argv[3], int(argv[4]), int(argv[5])
        min_frames = int(argv[argv.index('--min-frames') + 1]) if '--min-frames' in argv else 1
        return check_raw(path, fmt, w, h, min_frames, '--progress' in argv)
    if mode == 'rgb':
        path, w, h, tol = argv[2], int(argv[3]), int(argv[4]), int(argv[5])
        data = open(path, 'rb').read()
        if len(data) < w * h * 3:
            print(f'{path}: {len(data)} bytes, not a {w}x{h} rgb24 frame')
            return False
        # The last frame: the first ones may show the backdrop while a paused engine wakes up.
        data = data[(len(data) // (w * h * 3) - 1) * w * h * 3:]
        samples = [tuple(data[(y * w + x) * 3:(y * w + x) * 3 + 3]) for x, y, _ in points(w, h)]
        return check_pixels(samples, w, h, tol, path)
    if mode == 'points':
        print(json.dumps([[x, y] for x, y, _ in points(int(argv[2]), int(argv[3]))]))
        return True
    if mode == 'pixels':
        w, h, tol = int(argv[2]), int(argv[3]), int(argv[4])
        return check_pixels(json.loads(argv[5]), w, h, tol, 'browser canvas')
    print(__doc__)
    return False


if __name__ == '__main__':
    sys.exit(0 if main(sys.argv) else 1)
