"""An RTSP camera for the tests: GStreamer's RTSP server sending an MJPEG AVI as RTP/JPEG.

Run by Debian's ``/usr/bin/python3``, which has GObject introspection (the venv has
not): ``/usr/bin/python3 rtsp_camera.py PORT /MOUNT FILE.avi``. Prints ``ready PORT``
once it listens (PORT 0: a free port, the one bound is printed). Needs Debian's
python3-gi, gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-good.

Each client gets its own pipeline, from the start of the file, paced at the file's
frame rate like a camera. The JPEG frames are decoded and encoded again because RTP/JPEG
(RFC 2435) carries no Huffman tables: the receiver assumes the standard ones, which
GStreamer's jpegenc uses and FFmpeg's MJPEG encoder (its default 'optimal' tables) does
not — sent as they are, those frames decode to noise.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ELEMENTS = ("filesrc", "avidemux", "jpegdec", "jpegenc", "rtpjpegpay")


def main() -> None:
    port, mount, path = sys.argv[1], sys.argv[2], sys.argv[3]
    Gst.init(None)
    missing = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        sys.exit(
            f"GStreamer elements missing: {', '.join(missing)} "
            "(apt-get install gstreamer1.0-plugins-good)"
        )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    location = path.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! avidemux ! jpegdec ! jpegenc '
        "! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(False)  # every client starts at the first frame
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print(f"ready {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
