using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Tp7.Engine.IO;

/// <summary>
/// Reader and writer for NumPy's .npy format (versions 1.0, 2.0 and 3.0), the exchange format with
/// tools/ scripts and scikit-learn. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
/// — magic "\x93NUMPY", major, minor, header length (uint16 for 1.0, uint32 for 2.0/3.0), a Python dict literal
/// <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (N, D), }</c> padded with spaces to a multiple of 64
/// bytes and ended by '\n', then the raw C-order data.
/// Only little-endian float32/float64/int32/int64 and C order are accepted; anything else is refused with a
/// one-line message naming the file.
/// </summary>
public static class Npy
{
    // NumPy (>= 1.24) refuses headers over 10000 bytes unless told otherwise; a real header for any shape we
    // write is under 200 bytes, so a larger one means a corrupt or hostile file.
    public const int MaxHeaderBytes = 10000;
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Element types we read and write; <see cref="Descr"/> gives NumPy's spelling.</summary>
    public enum DType { Float32, Float64, Int32, Int64 }

    public static string Descr(DType t) => t switch
    {
        DType.Float32 => "<f4", DType.Float64 => "<f8", DType.Int32 => "<i4", DType.Int64 => "<i8",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    private static int ItemSize(DType t) => t is DType.Float32 or DType.Int32 ? 4 : 8;

    /// <summary>The parsed header of a .npy file.</summary>
    public sealed record Header(DType DType, long[] Shape, long DataOffset)
    {
        public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    }

    // ===================================================================== writing

    /// <summary>Writes float32 data of the given C-order shape (e.g. [N, D]) as '&lt;f4'.</summary>
    public static void Write(string path, ReadOnlySpan<float> data, params long[] shape) =>
        WriteRaw(path, DType.Float32, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>Writes float64 data of the given C-order shape as '&lt;f8'.</summary>
    public static void Write(string path, ReadOnlySpan<double> data, params long[] shape) =>
        WriteRaw(path, DType.Float64, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>Writes int32 data (e.g. labels, shape [N]) as '&lt;i4'.</summary>
    public static void Write(string path, ReadOnlySpan<int> data, params long[] shape) =>
        WriteRaw(path, DType.Int32, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>Writes int64 data (e.g. labels, shape [N]) as '&lt;i8'.</summary>
    public static void Write(string path, ReadOnlySpan<long> data, params long[] shape) =>
        WriteRaw(path, DType.Int64, MemoryMarshal.AsBytes(data), data.Length, shape);

    private static void WriteRaw(string path, DType dtype, ReadOnlySpan<byte> bytes, long count, long[] shape)
    {
        if (shape.Length == 0) shape = [count];
        long expected = CheckShape(path, shape);
        if (expected != count)
            throw new ArgumentException($"{path}: data has {count} elements but shape ({string.Join(", ", shape)}) needs {expected}");
        using var file = new AtomicFile(path);
        file.Stream.Write(BuildHeader(dtype, shape));
        file.Stream.Write(bytes);
        file.Commit();
    }

    /// <summary>
    /// Writes a '&lt;f4' array of the given C-order shape whose data <paramref name="writeData"/> streams into the file
    /// after the header (e.g. copied from other .npy files, without holding them in memory); refuses data of another
    /// length. Atomic as the other writers: nothing is left behind when it fails.
    /// </summary>
    public static void WriteFloat32(string path, long[] shape, Action<Stream> writeData)
    {
        long count = CheckShape(path, shape);
        byte[] header = BuildHeader(DType.Float32, shape);
        using var file = new AtomicFile(path);
        file.Stream.Write(header);
        writeData(file.Stream);
        long written = file.Stream.Position - header.Length;
        if (written != count * 4)
            throw new InvalidDataException($"{path}: shape ({string.Join(", ", shape)}) of '<f4' needs {count * 4} data bytes, {written} were written");
        file.Commit();
    }

    /// <summary>The number of elements of <paramref name="shape"/>; refuses negative dimensions and a big-endian host.</summary>
    private static long CheckShape(string path, long[] shape)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException($"{path}: .npy writer assumes a little-endian host");
        long expected = 1;
        foreach (long s in shape)
        {
            if (s < 0) throw new ArgumentException($"{path}: negative dimension in shape ({string.Join(", ", shape)})");
            expected *= s;
        }
        return expected;
    }

    /// <summary>A temp file in the target's folder, renamed over the target on <see cref="Commit"/> (so a reader never
    /// sees half a file) and deleted on dispose when not committed.</summary>
    private sealed class AtomicFile : IDisposable
    {
        private readonly string _full, _tmp;
        private bool _committed;
        public FileStream Stream { get; }

        public AtomicFile(string path)
        {
            _full = Path.GetFullPath(path);
            _tmp = _full + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
            Stream = new FileStream(_tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        }

        public void Commit()
        {
            Stream.Flush(flushToDisk: false);
            Stream.Dispose();
            File.Move(_tmp, _full, overwrite: true);
            _committed = true;
        }

        public void Dispose()
        {
            Stream.Dispose();
            if (!_committed)
                try { File.Delete(_tmp); } catch (IOException) { /* best effort; the original error matters more */ }
        }
    }

    private static byte[] BuildHeader(DType dtype, long[] shape)
    {
        string shapeText = shape.Length == 1
            ? $"({shape[0]},)"
            : "(" + string.Join(", ", shape.Select(s => s.ToString(CultureInfo.InvariantCulture))) + ")";
        string dict = $"{{'descr': '{Descr(dtype)}', 'fortran_order': False, 'shape': {shapeText}, }}";
        // Version 1.0 when the header length fits in uint16, else 2.0; the total prefix is padded to 64 bytes.
        bool v1 = dict.Length + 1 + 10 <= ushort.MaxValue;
        int prefix = v1 ? 10 : 12;
        int total = (prefix + dict.Length + 1 + 63) / 64 * 64;
        int headerLen = total - prefix;
        var buf = new byte[total];
        Magic.CopyTo(buf);
        buf[6] = (byte)(v1 ? 1 : 2);
        buf[7] = 0;
        if (v1) BinaryPrimitives.WriteUInt16LittleEndian(buf.AsSpan(8), (ushort)headerLen);
        else BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(8), (uint)headerLen);
        Encoding.ASCII.GetBytes(dict, buf.AsSpan(prefix));
        buf.AsSpan(prefix + dict.Length, headerLen - dict.Length - 1).Fill((byte)' ');
        buf[^1] = (byte)'\n';
        return buf;
    }

    // ===================================================================== reading

    /// <summary>Reads a float array ('&lt;f4', or '&lt;f8' narrowed to float) and its shape.</summary>
    public static (float[] Data, long[] Shape) ReadFloat32(string path)
    {
        using var fs = OpenRead(path);
        var h = ReadHeader(fs, path);
        int count = CheckedCount(h, path);
        var data = new float[count];
        switch (h.DType)
        {
            case DType.Float32:
                ReadExactly(fs, MemoryMarshal.AsBytes(data.AsSpan()), path);
                break;
            case DType.Float64:
                var tmp = new double[count];
                ReadExactly(fs, MemoryMarshal.AsBytes(tmp.AsSpan()), path);
                for (int i = 0; i < count; i++) data[i] = (float)tmp[i];
                break;
            default:
                throw new InvalidDataException($"{path}: dtype '{Descr(h.DType)}' is not a float type (expected '<f4' or '<f8')");
        }
        return (data, h.Shape);
    }

    /// <summary>Reads a float64 array ('&lt;f8', or '&lt;f4' widened) and its shape.</summary>
    public static (double[] Data, long[] Shape) ReadFloat64(string path)
    {
        using var fs = OpenRead(path);
        var h = ReadHeader(fs, path);
        int count = CheckedCount(h, path);
        var data = new double[count];
        switch (h.DType)
        {
            case DType.Float64:
                ReadExactly(fs, MemoryMarshal.AsBytes(data.AsSpan()), path);
                break;
            case DType.Float32:
                var tmp = new float[count];
                ReadExactly(fs, MemoryMarshal.AsBytes(tmp.AsSpan()), path);
                for (int i = 0; i < count; i++) data[i] = tmp[i];
                break;
            default:
                throw new InvalidDataException($"{path}: dtype '{Descr(h.DType)}' is not a float type (expected '<f4' or '<f8')");
        }
        return (data, h.Shape);
    }

    /// <summary>Reads an integer array ('&lt;i8' or '&lt;i4') as int64, and its shape.</summary>
    public static (long[] Data, long[] Shape) ReadInt64(string path)
    {
        using var fs = OpenRead(path);
        var h = ReadHeader(fs, path);
        int count = CheckedCount(h, path);
        var data = new long[count];
        switch (h.DType)
        {
            case DType.Int64:
                ReadExactly(fs, MemoryMarshal.AsBytes(data.AsSpan()), path);
                break;
            case DType.Int32:
                var tmp = new int[count];
                ReadExactly(fs, MemoryMarshal.AsBytes(tmp.AsSpan()), path);
                for (int i = 0; i < count; i++) data[i] = tmp[i];
                break;
            default:
                throw new InvalidDataException($"{path}: dtype '{Descr(h.DType)}' is not an integer type (expected '<i8' or '<i4')");
        }
        return (data, h.Shape);
    }

    /// <summary>Reads an integer array ('&lt;i4' or '&lt;i8') as int32; refuses values outside int32's range.</summary>
    public static (int[] Data, long[] Shape) ReadInt32(string path)
    {
        var (wide, shape) = ReadInt64(path);
        var data = new int[wide.Length];
        for (int i = 0; i < wide.Length; i++)
        {
            if (wide[i] is < int.MinValue or > int.MaxValue)
                throw new InvalidDataException($"{path}: element {i} = {wide[i]} does not fit in int32");
            data[i] = (int)wide[i];
        }
        return (data, shape);
    }

    /// <summary>Parses the header only (for callers that check shapes before reading the data).</summary>
    public static Header ReadHeader(string path)
    {
        using var fs = OpenRead(path);
        return ReadHeader(fs, path);
    }

    /// <summary>The file opened at the first data byte of <paramref name="header"/> (read with <see cref="ReadHeader(string)"/>), to
    /// stream its data; the header is read again, so a file that changed since is refused.</summary>
    public static FileStream OpenData(string path, Header header)
    {
        var fs = OpenRead(path);
        try
        {
            var now = ReadHeader(fs, path);
            if (now.DType != header.DType || !now.Shape.SequenceEqual(header.Shape) || now.DataOffset != header.DataOffset)
                throw new InvalidDataException($"{path}: changed while being read (shape ({string.Join(", ", now.Shape)}), was ({string.Join(", ", header.Shape)}))");
            fs.Position = now.DataOffset;
            return fs;
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    private static FileStream OpenRead(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
    }

    private static Header ReadHeader(FileStream fs, string path)
    {
        Span<byte> pre = stackalloc byte[12];
        if (fs.Length < 10 || fs.Read(pre[..10]) != 10 || !pre[..6].SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: not a .npy file (bad magic; expected \\x93NUMPY)");
        byte major = pre[6];
        long headerLen;
        int prefix;
        if (major == 1)
        {
            headerLen = BinaryPrimitives.ReadUInt16LittleEndian(pre[8..]);
            prefix = 10;
        }
        else if (major is 2 or 3)
        {
            if (fs.Read(pre[10..12]) != 2) throw new InvalidDataException($"{path}: truncated .npy header");
            headerLen = BinaryPrimitives.ReadUInt32LittleEndian(pre[8..]);
            prefix = 12;
        }
        else throw new InvalidDataException($"{path}: unsupported .npy format version {major}.{pre[7]} (supported: 1.0, 2.0, 3.0)");

        if (headerLen > MaxHeaderBytes)
            throw new InvalidDataException($"{path}: .npy header is {headerLen} bytes, over the {MaxHeaderBytes}-byte limit");
        if (prefix + headerLen > fs.Length)
            throw new InvalidDataException($"{path}: truncated .npy header ({headerLen} bytes announced, file is {fs.Length} bytes)");
        var hb = new byte[headerLen];
        ReadExactly(fs, hb, path);
        // 1.0/2.0 headers are latin-1 (in practice ASCII); 3.0 is UTF-8. Both decode ASCII identically.
        string text = major == 3 ? Encoding.UTF8.GetString(hb) : Encoding.Latin1.GetString(hb);
        var (descr, fortran, shape) = ParseDict(text, path);

        DType dtype = descr switch
        {
            "<f4" => DType.Float32, "<f8" => DType.Float64, "<i4" => DType.Int32, "<i8" => DType.Int64,
            _ => throw new InvalidDataException($"{path}: unsupported dtype '{descr}' (supported: '<f4', '<f8', '<i4', '<i8')"),
        };
        if (fortran)
            throw new InvalidDataException($"{path}: fortran_order is True; only C-order arrays are supported (save with np.ascontiguousarray)");
        var h = new Header(dtype, shape, prefix + headerLen);
        long count = 1;
        foreach (long s in shape)
        {
            if (s < 0) throw new InvalidDataException($"{path}: negative dimension in shape ({string.Join(", ", shape)})");
            if (s != 0 && count > long.MaxValue / 16 / s)
                throw new InvalidDataException($"{path}: shape ({string.Join(", ", shape)}) is too large");
            count *= s;
        }
        long expectedBytes = h.DataOffset + count * ItemSize(dtype);
        if (fs.Length != expectedBytes)
            throw new InvalidDataException(
                $"{path}: shape ({string.Join(", ", shape)}) of '{descr}' needs {count * ItemSize(dtype)} data bytes, file has {fs.Length - h.DataOffset}");
        return h;
    }

    private static int CheckedCount(Header h, string path)
    {
        if (h.Count > Array.MaxLength)
            throw new InvalidDataException($"{path}: {h.Count} elements exceed the largest .NET array ({Array.MaxLength})");
        return (int)h.Count;
    }

    private static void ReadExactly(Stream s, Span<byte> dst, string path)
    {
        try { s.ReadExactly(dst); }
        catch (EndOfStreamException) { throw new InvalidDataException($"{path}: file ends before the data announced by its header"); }
    }

    // The header is a Python dict literal written by numpy's repr; we accept its three keys in any order,
    // with either quote style, and ignore whitespace. Anything else is an error.
    private static (string Descr, bool Fortran, long[] Shape) ParseDict(string text, string path)
    {
        string t = text.TrimEnd('\n', ' ', '\0').Trim();
        if (t.Length < 2 || t[0] != '{' || t[^1] != '}')
            throw new InvalidDataException($"{path}: .npy header is not a dict literal: {Shorten(t)}");
        string? descr = null;
        bool? fortran = null;
        long[]? shape = null;
        int p = 1;
        while (true)
        {
            SkipWs(t, ref p);
            if (t[p] == '}') break;
            string key = ReadQuoted(t, ref p, path);
            SkipWs(t, ref p);
            Expect(t, ref p, ':', path);
            SkipWs(t, ref p);
            switch (key)
            {
                case "descr": descr = ReadQuoted(t, ref p, path); break;
                case "fortran_order":
                    if (t.AsSpan(p).StartsWith("True")) { fortran = true; p += 4; }
                    else if (t.AsSpan(p).StartsWith("False")) { fortran = false; p += 5; }
                    else throw new InvalidDataException($"{path}: fortran_order is neither True nor False in header {Shorten(t)}");
                    break;
                case "shape": shape = ReadTuple(t, ref p, path); break;
                default: throw new InvalidDataException($"{path}: unexpected key '{key}' in .npy header");
            }
            SkipWs(t, ref p);
            if (t[p] == ',') p++;
            else if (t[p] != '}') throw new InvalidDataException($"{path}: malformed .npy header near position {p}: {Shorten(t)}");
        }
        if (descr is null || fortran is null || shape is null)
            throw new InvalidDataException($"{path}: .npy header lacks one of 'descr', 'fortran_order', 'shape': {Shorten(t)}");
        return (descr, fortran.Value, shape);
    }

    private static long[] ReadTuple(string t, ref int p, string path)
    {
        Expect(t, ref p, '(', path);
        var dims = new List<long>();
        while (true)
        {
            SkipWs(t, ref p);
            if (t[p] == ')') { p++; break; }
            int start = p;
            while (p < t.Length && char.IsAsciiDigit(t[p])) p++;
            if (p == start || !long.TryParse(t.AsSpan(start, p - start), NumberStyles.None, CultureInfo.InvariantCulture, out long v))
                throw new InvalidDataException($"{path}: bad dimension in .npy shape: {Shorten(t)}");
            dims.Add(v);
            SkipWs(t, ref p);
            if (t[p] == ',') p++;
            else if (t[p] != ')') throw new InvalidDataException($"{path}: malformed .npy shape: {Shorten(t)}");
        }
        return [.. dims];
    }

    private static string ReadQuoted(string t, ref int p, string path)
    {
        char q = t[p];
        if (q is not ('\'' or '"')) throw new InvalidDataException($"{path}: expected a quoted string at position {p} of .npy header: {Shorten(t)}");
        int end = t.IndexOf(q, p + 1);
        if (end < 0) throw new InvalidDataException($"{path}: unterminated string in .npy header: {Shorten(t)}");
        string s = t.Substring(p + 1, end - p - 1);
        p = end + 1;
        return s;
    }

    private static void Expect(string t, ref int p, char c, string path)
    {
        if (p >= t.Length || t[p] != c) throw new InvalidDataException($"{path}: expected '{c}' at position {p} of .npy header: {Shorten(t)}");
        p++;
    }

    private static void SkipWs(string t, ref int p)
    {
        while (p < t.Length - 1 && char.IsWhiteSpace(t[p])) p++;
    }

    private static string Shorten(string s) => s.Length <= 120 ? s : s[..120] + "...";
}
