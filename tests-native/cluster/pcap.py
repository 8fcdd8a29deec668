"""Reads the packet timestamps (Unix microseconds) of a classic pcap file as tcpdump writes it."""
import struct


def packet_times_us(path):
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            return []
        magic = struct.unpack("<I", header[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            endian = ">"
        else:
            raise ValueError(f"{path}: not a pcap file (magic {magic:#x})")
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        times = []
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return times
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            f.seek(incl, 1)
            times.append(sec * 1_000_000 + (frac // 1000 if nano else frac))
