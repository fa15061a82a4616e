"""check_persona.py FILE W H kai|webcam: raw RGB24 frames from the avatar camera: none is black,
and the last shows the persona.

kai: the drawn avatar on kai's #ece2d0 backdrop (corner) with detail in the middle.
webcam: ffmpeg's flat #30c050 picture passed through (BT.601 round trips: within a tolerance),
        the same all over the frame (640x360 into a 16:9 persona: no bars).
"""
import sys

path, w, h, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = open(path, "rb").read()
size = w * h * 3
n = len(data) // size
assert n >= 10, f"{n} frames"
for i in range(n):
    mean = sum(data[i * size:(i + 1) * size:97]) / len(data[i * size:(i + 1) * size:97])
    assert mean > 20, f"frame {i} is black (mean {mean:.0f})"
frame = data[(n - 1) * size:n * size]
px = lambda x, y: tuple(frame[(y * w + x) * 3:(y * w + x) * 3 + 3])
near = lambda a, b, tol: all(abs(p - q) <= tol for p, q in zip(a, b))
corner, centre = px(4, 4), px(w // 2, h // 2)
if want == "kai":
    assert near(corner, (0xec, 0xe2, 0xd0), 24), f"corner {corner}: not kai's backdrop"
    assert max(frame) - min(frame) > 100, "a flat picture: no avatar"
elif want == "webcam":
    # The cross-fade from kai: the picture only ever moves towards the webcam's green.
    dist = [sum(abs(a - b) for a, b in zip(data[i * size + 12:i * size + 15], (0x30, 0xc0, 0x50))) for i in range(n)]
    assert all(later <= earlier + 8 for earlier, later in zip(dist, dist[1:])), f"not a fade towards the webcam: {dist}"
    for p in (corner, centre, px(w - 5, h - 5)):
        assert near(p, (0x30, 0xc0, 0x50), 20), f"{p}: not the webcam's green"
else:
    sys.exit(f"unknown persona {want}")
print(n, "frames of", want, "corner", corner, "centre", centre)
