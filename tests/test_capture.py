"""The capture part on its own: its bounds, its files, and a device that
leaves the table while it is captured. The agent is real, its LAN
interface here is lo (an AF_PACKET socket on it reads, changes nothing);
the stories in the simulated home are tests/test_capture_home.py."""

import os
import struct

import pytest

from spin_lite import agent, capture, config
from spin_lite.errors import ApiError

CAMERA, SPEAKER = "02:00:00:00:00:01", "02:00:00:00:00:02"


def make(tmp_path, **cfg):
    c = config.defaults()
    c.update(run_dir=str(tmp_path / "run"), lan_ifname="lo", capture_tcpdump="", capture_free_kb=1,
             capture_seconds_max=30, capture_kb_max=64, max_devices=2)
    c.update(cfg)
    a = agent.Agent(c)
    a.devices.update({"192.168.8.10": CAMERA}, {}, {}, set(), 1000.0)
    part = capture.Captures(c)
    a.parts.append(part)
    part.start(a)
    return a, part


def refused(fn, *args):
    with pytest.raises(ApiError) as e:
        fn(*args)
    return e.value.status, e.value.message


def test_out_of_bounds_asks_start_nothing(tmp_path):
    a, part = make(tmp_path)
    assert refused(part.begin, CAMERA, 31, None)[0] == 2
    assert refused(part.begin, CAMERA, 0, None)[0] == 2
    assert refused(part.begin, CAMERA, 10, 65)[0] == 2
    assert refused(part.begin, SPEAKER, 10, None) == (4, "no device %s" % SPEAKER)
    assert part.listing()["captures"] == [] and os.listdir(part.dir) == []
    assert oct(os.stat(part.dir).st_mode & 0o777) == "0o700"
    a2, off = make(tmp_path / "off", capture_max=0)
    assert "capture_max 0" in refused(off.begin, CAMERA, 10, None)[1]
    a3, floor = make(tmp_path / "full", capture_free_kb=1 << 40)
    assert "capture_free_kb" in refused(floor.begin, CAMERA, 10, None)[1]
    a4, nolan = make(tmp_path / "nolan", lan_ifname="br-nowhere")
    assert refused(nolan.begin, CAMERA, 10, None)[0] == 4


def test_a_device_pushed_out_of_the_table_ends_its_capture_saying_so(tmp_path):
    a, part = make(tmp_path)
    c = part.begin(CAMERA, 30, None)
    assert (c["state"], c["tool"]) == ("running", "socket")
    path = os.path.join(part.dir, c["file"])
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    part.after_scan(a, 0)
    assert part.listing()["captures"][0]["state"] == "running"
    # two newer devices and max_devices 2: the camera is dropped
    a.devices.table[CAMERA].last_seen = 0
    a.devices.update({"192.168.8.11": SPEAKER, "192.168.8.12": "02:00:00:00:00:03"}, {}, {}, set(), 2000.0)
    assert a.devices.get(CAMERA) is None
    part.after_scan(a, 0)
    [done] = part.listing()["captures"]
    assert (done["state"], done["why"]) == ("stopped", "device")
    assert open(path, "rb").read(24) == capture.PCAP_HEADER
    part.stop(a)  # capture_keep off: the file goes with the agent
    assert not os.path.exists(path)


def test_a_file_cut_at_the_size_bound_ends_on_a_whole_packet(tmp_path):
    w = capture.Watch(CAMERA, 4, None)
    for i in range(6):  # the ring keeps the last four, oldest first
        w.add(1000.0 + i, bytes([i]) * (100 + i))
    assert [p[1] for p in w.packets()] == [102, 103, 104, 105]
    path = str(tmp_path / "x.pcap")
    with open(path, "wb") as f:
        f.write(w.pcap())
    size = os.path.getsize(path)
    assert capture.whole_records(path, size) == (4, size)
    # a limit inside the third record keeps two
    packets, end = capture.whole_records(path, 24 + 2 * 16 + 102 + 103 + 50)
    assert (packets, end) == (2, 24 + 2 * 16 + 102 + 103)
    capture.cut(path, end)
    assert os.path.getsize(path) == end
    data = open(path, "rb").read()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4


def test_tcpdump_gets_an_argument_list_and_its_drop_count_is_read():
    argv = capture.tcpdump_argv("tcpdump", "br-lan", "/var/run/spin/captures/capture-1.pcap", CAMERA, 60)
    assert argv[argv.index("-G") + 1] == "62"
    assert argv[-3:] == ["ether", "host", CAMERA] and argv[argv.index("-w") + 1].endswith("capture-1.pcap")
    err = "tcpdump: listening on br-lan\n12 packets captured\n14 packets received by filter\n2 packets dropped by kernel\n"
    assert capture._dropped(err) == 2
    assert capture._dropped("") == 0
