using System.Buffers.Binary;

namespace Tp7.Engine.Imaging;

/// <summary>
/// Walks the segment structure of JPEG and PNG files to find truncation before decoding.
/// </summary>
/// <remarks>
/// ImageSharp fills the missing part of a cut-off JPEG or PNG with grey or black and returns no error,
/// whereas Pillow raises "image file is truncated". A half-grey photo would silently poison a
/// training set, so a file that ends before its end marker is refused here. Trailing bytes after the
/// end marker (some cameras append data) are accepted, as libjpeg and libpng accept them.
/// </remarks>
internal static class ContainerCheck
{
    /// <summary>Null when the JPEG reaches its EOI marker, else the reason.</summary>
    public static string? Jpeg(ReadOnlySpan<byte> d)
    {
        if (d.Length < 4 || d[0] != 0xFF || d[1] != 0xD8)
            return "corrupt JPEG (no start-of-image marker)";
        int i = 2;
        bool sawScan = false;
        while (true)
        {
            // Find the next marker; libjpeg skips stray bytes before a marker with a warning, so do we.
            while (i < d.Length && d[i] != 0xFF) i++;
            while (i < d.Length && d[i] == 0xFF) i++;   // fill bytes
            if (i >= d.Length) return "truncated JPEG";
            byte marker = d[i++];
            if (marker == 0xD9) return sawScan ? null : "corrupt JPEG (no image data before end marker)";
            if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;   // no length field
            if (i + 2 > d.Length) return "truncated JPEG";
            int length = BinaryPrimitives.ReadUInt16BigEndian(d[i..]);
            if (length < 2) return $"corrupt JPEG (segment 0xFF{marker:X2} has length {length})";
            if (i + length > d.Length) return "truncated JPEG";
            i += length;
            if (marker != 0xDA) continue;

            // Entropy-coded data after SOS: 0xFF is followed by 0x00 (stuffed byte) or RSTn inside
            // the scan; any other marker ends the scan.
            sawScan = true;
            while (true)
            {
                while (i < d.Length && d[i] != 0xFF) i++;
                if (i + 1 >= d.Length) return "truncated JPEG";
                byte next = d[i + 1];
                if (next == 0x00 || (next >= 0xD0 && next <= 0xD7)) { i += 2; continue; }
                if (next == 0xFF) { i++; continue; }
                break;   // i points at the 0xFF of the next marker
            }
        }
    }

    private static ReadOnlySpan<byte> PngSignature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Null when every PNG chunk up to IEND is complete and image data was present, else the reason.</summary>
    public static string? Png(ReadOnlySpan<byte> d)
    {
        if (d.Length < 8 || !d[..8].SequenceEqual(PngSignature))
            return "corrupt PNG (bad signature)";
        long i = 8;
        bool sawData = false;
        while (true)
        {
            if (i + 8 > d.Length) return "truncated PNG";
            uint length = BinaryPrimitives.ReadUInt32BigEndian(d[(int)i..]);
            if (length > int.MaxValue) return "corrupt PNG (chunk length above 2^31)";
            ReadOnlySpan<byte> type = d.Slice((int)i + 4, 4);
            long end = i + 8 + length + 4;   // length, type, data, CRC
            if (end > d.Length) return "truncated PNG";
            if (type.SequenceEqual("IDAT"u8)) sawData = true;
            if (type.SequenceEqual("IEND"u8)) return sawData ? null : "corrupt PNG (no image data)";
            i = end;
        }
    }

    /// <summary>
    /// Clears the transparency flag of the graphic control extensions before the first GIF image, in place.
    /// </summary>
    /// <remarks>Pillow's <c>convert("RGB")</c> of a GIF looks every index up in the palette, the
    /// transparent one included; ImageSharp leaves transparent pixels black. Without the flag ImageSharp
    /// does the palette lookup too. A malformed block structure is left for the decoder to report.</remarks>
    public static void GifIgnoreTransparency(Span<byte> d)
    {
        if (d.Length < 13 || !(d[..6].SequenceEqual("GIF87a"u8) || d[..6].SequenceEqual("GIF89a"u8))) return;
        int i = 13;
        byte screen = d[10];
        if ((screen & 0x80) != 0) i += 3 << ((screen & 7) + 1);   // global colour table
        while (i + 1 < d.Length && d[i] == 0x21)   // extension blocks until the first image (0x2C)
        {
            byte label = d[i + 1];
            if (label == 0xF9 && i + 3 < d.Length && d[i + 2] == 4)
                d[i + 3] &= 0xFE;
            i += 2;
            while (i < d.Length && d[i] != 0) i += d[i] + 1;   // data sub-blocks
            i++;
        }
    }
}
