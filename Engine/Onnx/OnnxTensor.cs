using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Onnx;
using Tp7.Engine.IO;
using OnnxType = Onnx.TensorProto.Types.DataType;

namespace Tp7.Engine.Onnx;

/// <summary>
/// A validated tensor of an .onnx file (an initializer or a Constant's value). The data stays where protobuf put
/// it (raw_data, a typed field, or a byte range of an external file beside the model) until
/// <see cref="ToFloats"/> or <see cref="ToInt64s"/> converts it into a new array. Every check that can fail
/// (dims, dtype, data length, external file and range) ran when the tensor was made, so a conversion only fails
/// if an external file changed since.
/// </summary>
public sealed record OnnxTensor
{
    /// <summary>Tensors with more elements than one .NET array holds (<see cref="Array.MaxLength"/>) are refused.</summary>
    public const long MaxElements = 0x7FFF_FFC7;

    /// <summary>More dimensions than this are refused: no model needs them, and they would flood a message.</summary>
    public const int MaxRank = 32;

    /// <summary>An external file is read through a buffer of this size when its bytes need converting.</summary>
    private const int ChunkBytes = 1 << 20;

    public string Name { get; }

    /// <summary>The shape, outermost first; [] for a scalar. Every entry is in [0, <see cref="MaxElements"/>].</summary>
    public long[] Dims { get; }

    /// <summary>A <see cref="TensorProto.Types.DataType"/> value: one of FLOAT, DOUBLE, FLOAT16, BFLOAT16, INT32, INT64.</summary>
    public int DataType { get; }

    /// <summary>Product of <see cref="Dims"/> (1 for a scalar), at most <see cref="MaxElements"/>.</summary>
    public long Elements { get; }

    private readonly string _file;
    private readonly string _subject;
    private readonly TensorProto _proto;
    private readonly ExternalRange? _external;

    /// <summary>A byte range of a file beside the model, checked against the file's size at load.</summary>
    private sealed record ExternalRange(string FullPath, string Location, long Offset, long Length);

    private OnnxTensor(string name, long[] dims, int dataType, long elements, string file, string subject, TensorProto proto,
        ExternalRange? external)
    {
        Name = name;
        Dims = dims;
        DataType = dataType;
        Elements = elements;
        _file = file;
        _subject = subject;
        _proto = proto;
        _external = external;
    }

    /// <summary>Same name, type, dims and the same stored data (not compared value by value: weights are megabytes).</summary>
    public bool Equals(OnnxTensor? other) =>
        other is not null && Name == other.Name && DataType == other.DataType && Dims.AsSpan().SequenceEqual(other.Dims)
        && ReferenceEquals(_proto, other._proto) && _external == other._external;

    public override int GetHashCode() => HashCode.Combine(Name, DataType, Elements);

    /// <summary>The values as float32: FLOAT as is, DOUBLE rounded to nearest, FLOAT16 and BFLOAT16 exactly,
    /// INT32 and INT64 converted (rounded to nearest above 2^24).</summary>
    public float[] ToFloats()
    {
        var result = GC.AllocateUninitializedArray<float>((int)Elements);
        var type = (OnnxType)DataType;
        if (_external is { } x)
        {
            if (type == OnnxType.Float) ReadExternal(x, 0, MemoryMarshal.AsBytes(result.AsSpan()));
            else ConvertExternal(x, result, (bytes, dst) => RawToFloats(type, bytes, dst));
        }
        else if (!_proto.RawData.IsEmpty)
        {
            RawToFloats(type, _proto.RawData.Span, result);
        }
        else
        {
            TypedToFloats(type, result);
        }
        return result;
    }

    /// <summary>The values of an INT64 or INT32 tensor (shapes, axes, split sizes, pads) as longs.</summary>
    public long[] ToInt64s()
    {
        var type = (OnnxType)DataType;
        if (type is not (OnnxType.Int64 or OnnxType.Int32))
            throw new OnnxFormatException(_file, _subject,
                $"is {OnnxDataTypes.Name(DataType)}, expected an integer tensor (INT64 or INT32) here");
        var result = GC.AllocateUninitializedArray<long>((int)Elements);
        if (_external is { } x)
        {
            if (type == OnnxType.Int64) ReadExternal(x, 0, MemoryMarshal.AsBytes(result.AsSpan()));
            else ConvertExternal(x, result, (bytes, dst) => RawToInt64s(type, bytes, dst));
        }
        else if (!_proto.RawData.IsEmpty)
        {
            RawToInt64s(type, _proto.RawData.Span, result);
        }
        else if (type == OnnxType.Int64)
        {
            for (int i = 0; i < result.Length; i++) result[i] = _proto.Int64Data[i];
        }
        else
        {
            for (int i = 0; i < result.Length; i++) result[i] = _proto.Int32Data[i];
        }
        return result;
    }

    // ---------------------------------------------------------------- conversions

    // raw_data and external data are little-endian fixed-width elements (onnx.proto3, TensorProto.raw_data); the
    // reader refuses big-endian machines at load, so the bytes are the in-memory layout.
    private static void RawToFloats(OnnxType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (type)
        {
            case OnnxType.Float:
                MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);
                break;
            case OnnxType.Double:
                TensorConvert.DoubleToSingle(MemoryMarshal.Cast<byte, double>(src), dst);
                break;
            case OnnxType.Float16:
                TensorConvert.HalfToSingle(MemoryMarshal.Cast<byte, ushort>(src), dst);
                break;
            case OnnxType.Bfloat16:
                TensorConvert.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(src), dst);
                break;
            case OnnxType.Int32:
            {
                var ints = MemoryMarshal.Cast<byte, int>(src);
                for (int i = 0; i < ints.Length; i++) dst[i] = ints[i];
                break;
            }
            case OnnxType.Int64:
            {
                var longs = MemoryMarshal.Cast<byte, long>(src);
                for (int i = 0; i < longs.Length; i++) dst[i] = longs[i];
                break;
            }
            default:
                throw new InvalidOperationException($"{type} passed validation but has no float conversion");
        }
    }

    private static void RawToInt64s(OnnxType type, ReadOnlySpan<byte> src, Span<long> dst)
    {
        if (type == OnnxType.Int64)
        {
            MemoryMarshal.Cast<byte, long>(src).CopyTo(dst);
            return;
        }
        var ints = MemoryMarshal.Cast<byte, int>(src);
        for (int i = 0; i < ints.Length; i++) dst[i] = ints[i];
    }

    private void TypedToFloats(OnnxType type, float[] dst)
    {
        switch (type)
        {
            case OnnxType.Float:
                _proto.FloatData.CopyTo(dst, 0);
                break;
            case OnnxType.Double:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)_proto.DoubleData[i];
                break;
            case OnnxType.Float16:
                // int32_data holds each 16-bit pattern in its low half (onnx.proto3, TensorProto.int32_data).
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf((ushort)_proto.Int32Data[i]);
                break;
            case OnnxType.Bfloat16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)(ushort)_proto.Int32Data[i] << 16);
                break;
            case OnnxType.Int32:
                for (int i = 0; i < dst.Length; i++) dst[i] = _proto.Int32Data[i];
                break;
            case OnnxType.Int64:
                for (int i = 0; i < dst.Length; i++) dst[i] = _proto.Int64Data[i];
                break;
            default:
                throw new InvalidOperationException($"{type} passed validation but has no float conversion");
        }
    }

    private delegate void ChunkConverter<T>(ReadOnlySpan<byte> source, Span<T> destination);

    /// <summary>Reads the external range through one buffer of at most <see cref="ChunkBytes"/> and converts it
    /// piece by piece, so a conversion never holds the tensor's bytes and its result at once.</summary>
    private void ConvertExternal<T>(ExternalRange x, T[] destination, ChunkConverter<T> convert)
    {
        int size = OnnxDataTypes.ElementSize(DataType);
        int perChunk = ChunkBytes / size;
        var buffer = new byte[Math.Min(ChunkBytes, Math.Max(x.Length, 1))];
        for (int done = 0; done < destination.Length;)
        {
            int count = Math.Min(perChunk, destination.Length - done);
            var chunk = buffer.AsSpan(0, count * size);
            ReadExternal(x, (long)done * size, chunk);
            convert(chunk, destination.AsSpan(done, count));
            done += count;
        }
    }

    private void ReadExternal(ExternalRange x, long offsetInRange, Span<byte> destination)
    {
        try
        {
            using SafeFileHandle handle = File.OpenHandle(x.FullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            long offset = x.Offset + offsetInRange;
            while (!destination.IsEmpty)
            {
                int n = RandomAccess.Read(handle, destination, offset);
                if (n <= 0)
                    throw new OnnxFormatException(_file, _subject,
                        $"external file {OnnxFormatException.Quote(x.Location)} ended at byte {offset}; it was changed or truncated after the model was loaded");
                destination = destination[n..];
                offset += n;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxFormatException(_file, _subject, $"cannot read external file {OnnxFormatException.Quote(x.Location)}: {e.Message}", e);
        }
    }

    // ---------------------------------------------------------------- validation

    /// <summary>
    /// Checks <paramref name="t"/> and wraps it. <paramref name="subject"/> names it in messages ("tensor 'W'",
    /// "node 'c' (Constant): attribute 'value'"). External data is looked up under <paramref name="externalDirectory"/>
    /// only; null refuses it. Nothing proportional to the dims is allocated here.
    /// </summary>
    internal static OnnxTensor Create(TensorProto t, string name, string file, string subject, string? externalDirectory) =>
        CreateIfSupported(t, name, file, subject, externalDirectory)
        ?? throw new OnnxFormatException(file, subject,
            $"data type {OnnxDataTypes.Name(t.DataType)} is not supported (supported: {OnnxDataTypes.SupportedNames})");

    /// <summary>As <see cref="Create"/>, but a tensor of a type this engine does not read gives null once its dims
    /// have been checked: a Constant of BOOL is the importer's business, not a malformed file.</summary>
    internal static OnnxTensor? CreateIfSupported(TensorProto t, string name, string file, string subject, string? externalDirectory)
    {
        long elements = CheckDims(t.Dims, file, subject);
        int size = OnnxDataTypes.ElementSize(t.DataType);
        if (size == 0) return null;
        if (t.Segment is not null)
            throw new OnnxFormatException(file, subject, "is stored in segments, which this reader does not support");

        long needed = elements * size; // cannot overflow: elements ≤ 2^31, size ≤ 8
        var fields = StorageFields(t);
        ExternalRange? external = null;
        switch (t.DataLocation)
        {
            case TensorProto.Types.DataLocation.External:
                if (fields.Count > 0)
                    throw new OnnxFormatException(file, subject, $"has data_location EXTERNAL and also {string.Join(" and ", fields)}");
                external = CheckExternal(t, file, subject, externalDirectory, needed);
                break;
            case TensorProto.Types.DataLocation.Default:
                if (t.ExternalData.Count > 0)
                    throw new OnnxFormatException(file, subject, "has external_data entries but data_location is DEFAULT");
                CheckEmbedded(t, fields, elements, needed, file, subject);
                break;
            default:
                throw new OnnxFormatException(file, subject, $"data_location {(int)t.DataLocation} is neither DEFAULT (0) nor EXTERNAL (1)");
        }
        return new OnnxTensor(name, [.. t.Dims], t.DataType, elements, file, subject, t, external);
    }

    /// <summary>Checks rank, sign and size of each dim and of their product, which is returned.</summary>
    internal static long CheckDims(IReadOnlyList<long> dims, string file, string subject)
    {
        if (dims.Count > MaxRank)
            throw new OnnxFormatException(file, subject, $"has {dims.Count} dims, more than the {MaxRank} this reader accepts");
        for (int i = 0; i < dims.Count; i++)
        {
            if (dims[i] < 0)
                throw new OnnxFormatException(file, subject, $"dims {FormatDims(dims)}: dim {i} is negative");
            if (dims[i] > MaxElements)
                throw new OnnxFormatException(file, subject, $"dims {FormatDims(dims)}: dim {i} is over the {MaxElements}-element limit of one tensor");
        }
        foreach (long d in dims) if (d == 0) return 0;
        long count = 1;
        foreach (long d in dims)
        {
            if (count > MaxElements / d)
                throw new OnnxFormatException(file, subject, $"dims {FormatDims(dims)} hold more than the {MaxElements}-element limit of one tensor");
            count *= d;
        }
        return count;
    }

    internal static string FormatDims(IEnumerable<long> dims) => "[" + string.Join(", ", dims) + "]";

    /// <summary>The data fields of <paramref name="t"/> that hold something, by their onnx.proto3 names.</summary>
    private static List<string> StorageFields(TensorProto t)
    {
        var fields = new List<string>(2);
        if (!t.RawData.IsEmpty) fields.Add("raw_data");
        if (t.FloatData.Count > 0) fields.Add("float_data");
        if (t.DoubleData.Count > 0) fields.Add("double_data");
        if (t.Int32Data.Count > 0) fields.Add("int32_data");
        if (t.Int64Data.Count > 0) fields.Add("int64_data");
        if (t.Uint64Data.Count > 0) fields.Add("uint64_data");
        if (t.StringData.Count > 0) fields.Add("string_data");
        return fields;
    }

    private static void CheckEmbedded(TensorProto t, List<string> fields, long elements, long needed, string file, string subject)
    {
        string dims = FormatDims(t.Dims), type = OnnxDataTypes.Name(t.DataType);
        if (fields.Count == 0)
        {
            if (elements == 0) return;
            throw new OnnxFormatException(file, subject, $"dims {dims} of {type} need {elements} elements but the tensor holds no data");
        }
        if (fields.Count > 1)
            throw new OnnxFormatException(file, subject, $"holds data in both {fields[0]} and {fields[1]}; exactly one is allowed");
        string field = fields[0];
        if (field == "raw_data")
        {
            if (t.RawData.Length != needed)
                throw new OnnxFormatException(file, subject, $"dims {dims} of {type} need {needed} bytes, raw_data holds {t.RawData.Length}");
            return;
        }
        string expected = OnnxDataTypes.TypedField(t.DataType);
        if (field != expected)
            throw new OnnxFormatException(file, subject, $"is {type} but its data is in {field} (expected raw_data or {expected})");
        int count = field switch
        {
            "float_data" => t.FloatData.Count,
            "double_data" => t.DoubleData.Count,
            "int32_data" => t.Int32Data.Count,
            _ => t.Int64Data.Count,
        };
        if (count != elements)
            throw new OnnxFormatException(file, subject, $"dims {dims} of {type} need {elements} elements, {field} holds {count}");
    }

    /// <summary>
    /// Resolves external_data (onnx.proto3: location relative to the model's directory, optional offset and length,
    /// integers written as strings) and checks the range against the file. Locations must stay inside
    /// <paramref name="directory"/>: absolute paths and ".." are refused before the path is even resolved, and the
    /// resolved path is checked again. Symbolic links inside the directory are followed as the file system does.
    /// </summary>
    private static ExternalRange CheckExternal(TensorProto t, string file, string subject, string? directory, long needed)
    {
        string? location = null, offsetText = null, lengthText = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in t.ExternalData)
        {
            if (!seen.Add(entry.Key))
                throw new OnnxFormatException(file, subject, $"external_data has the key {OnnxFormatException.Quote(entry.Key)} twice");
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offsetText = entry.Value; break;
                case "length": lengthText = entry.Value; break;
                // "checksum" and tool-specific keys do not change where the bytes are.
            }
        }
        if (location is null)
            throw new OnnxFormatException(file, subject, "has data_location EXTERNAL but no external_data 'location'");
        string where = $"external location {OnnxFormatException.Quote(location)}";
        if (directory is null)
            throw new OnnxFormatException(file, subject, $"{where}: the model was read from memory without a directory for external data");
        long offset = ParseCount(offsetText, 0, file, subject, where, "offset");
        long length = ParseCount(lengthText, needed, file, subject, where, "length");
        string fullPath = ResolveInside(directory, location, file, subject, where);

        long fileLength;
        try
        {
            var info = new FileInfo(fullPath);
            if (!info.Exists) throw new OnnxFormatException(file, subject, $"{where}: no such file beside the model");
            fileLength = info.Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxFormatException(file, subject, $"{where}: cannot read: {e.Message}", e);
        }
        string dims = FormatDims(t.Dims), type = OnnxDataTypes.Name(t.DataType);
        if (length != needed)
            throw new OnnxFormatException(file, subject, $"{where}: dims {dims} of {type} need {needed} bytes, length says {length}");
        if (offset > fileLength)
            throw new OnnxFormatException(file, subject, $"{where}: offset {offset} is beyond the end of the file ({fileLength} bytes)");
        if (needed > fileLength - offset)
            throw new OnnxFormatException(file, subject,
                $"{where}: {needed} bytes at offset {offset} run past the end of the file ({fileLength} bytes)");
        return new ExternalRange(fullPath, location, offset, length);
    }

    private static long ParseCount(string? text, long fallback, string file, string subject, string where, string key)
    {
        if (text is null) return fallback;
        // Digits only: no sign, no spaces, no exponent; at most 18 digits so the value fits in a long.
        if (text.Length is 0 or > 18 || !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            throw new OnnxFormatException(file, subject, $"{where}: {key} {OnnxFormatException.Quote(text)} is not a non-negative integer");
        return value;
    }

    private static string ResolveInside(string directory, string location, string file, string subject, string where)
    {
        if (location.Length == 0)
            throw new OnnxFormatException(file, subject, $"{where}: the location is empty");
        foreach (char c in location)
            if (char.IsControl(c))
                throw new OnnxFormatException(file, subject, $"{where}: the location has a control character");
        if (Path.IsPathRooted(location) || location[0] is '/' or '\\' || (location.Length >= 2 && location[1] == ':'))
            throw new OnnxFormatException(file, subject, $"{where}: absolute paths are refused; external data must lie beside the model");
        foreach (string part in location.Split('/', '\\'))
            if (part == "..")
                throw new OnnxFormatException(file, subject, $"{where}: '..' is refused; external data must lie beside the model");
        string root, full;
        try
        {
            root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
            full = Path.GetFullPath(Path.Combine(root, location));
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new OnnxFormatException(file, subject, $"{where}: not a usable path: {e.Message}", e);
        }
        string prefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        var comparison = OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        if (!full.StartsWith(prefix, comparison))
            throw new OnnxFormatException(file, subject, $"{where}: resolves outside the model's directory");
        return full;
    }
}

/// <summary>ONNX's TensorProto.DataType values: names as the spec writes them, and the ones this engine reads.</summary>
internal static class OnnxDataTypes
{
    public const string SupportedNames = "FLOAT, DOUBLE, FLOAT16, BFLOAT16, INT32, INT64";

    private static readonly string[] Names =
    [
        "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE",
        "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2",
    ];

    /// <summary>"FLOAT", "INT64", ... or "unknown (99)".</summary>
    public static string Name(int type) => (uint)type < (uint)Names.Length ? Names[type] : $"unknown ({type})";

    /// <summary>Bytes per element of a supported type, 0 for every other.</summary>
    public static int ElementSize(int type) => (OnnxType)type switch
    {
        OnnxType.Float or OnnxType.Int32 => 4,
        OnnxType.Double or OnnxType.Int64 => 8,
        OnnxType.Float16 or OnnxType.Bfloat16 => 2,
        _ => 0,
    };

    /// <summary>The typed field that holds a supported type when raw_data is not used.</summary>
    public static string TypedField(int type) => (OnnxType)type switch
    {
        OnnxType.Float => "float_data",
        OnnxType.Double => "double_data",
        OnnxType.Int64 => "int64_data",
        _ => "int32_data", // INT32, FLOAT16 and BFLOAT16 (16-bit patterns in the low half)
    };
}
