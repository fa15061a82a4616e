#!/usr/bin/env python3
"""early_reader.py DEV W H FORMAT OUT COUNT: a reader that opens DEV before any producer exists,
holds it open, waits until a producer has set a format, then read()s COUNT frames into OUT."""
import fcntl, os, struct, sys, time
dev, w, h, fmt, out, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
VIDIOC_G_FMT = 0xC0D05604                      # _IOWR('V', 4, struct v4l2_format), 208 bytes on x86_64
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
size = w * h * 2 if fmt == 'yuyv' else w * h * 3 // 2
fd = os.open(dev, os.O_RDWR)
print(f'early reader: {dev} open before the producer', flush=True)
deadline = time.monotonic() + 120
while True:
    buf = bytearray(struct.pack('<I', V4L2_BUF_TYPE_VIDEO_CAPTURE).ljust(208, b'\0'))
    try:
        fcntl.ioctl(fd, VIDIOC_G_FMT, buf)
        width, height = struct.unpack_from('<II', buf, 8)
        if (width, height) == (w, h):
            break
    except OSError:
        pass                                   # no producer yet: the capture format is unset
    if time.monotonic() > deadline:
        sys.exit('early reader: no producer came within 120 s')
    time.sleep(0.1)
print(f'early reader: producer is there ({w}x{h}), reading {count} frames', flush=True)
def read_frame(first):
    # v4l2loopback >= 0.13 answers EIO to a read() between the producer's S_FMT and its first
    # write() (the sink keeps that gap to a few ms), and then EBUSY to that file: reopen once.
    global fd
    try:
        return os.read(fd, size)
    except OSError as e:
        if e.errno != 5 or not first:
            raise
        print('early reader: EIO while the producer starts: reopening', flush=True)
        os.close(fd)
        time.sleep(0.2)
        fd = os.open(dev, os.O_RDWR)
        return os.read(fd, size)
with open(out, 'wb') as f:
    for n in range(count):
        frame = read_frame(n == 0)
        if len(frame) != size:
            sys.exit(f'early reader: short read {len(frame)} of {size}')
        f.write(frame)
os.close(fd)
print('early reader: done', flush=True)
