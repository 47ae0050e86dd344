using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;

namespace Tp7.Engine.IO;

/// <summary>One tensor as the safetensors header describes it. <see cref="Begin"/> and <see cref="End"/> are
/// byte offsets into the data buffer that follows the header (not into the file).</summary>
public readonly record struct TensorInfo(string Key, string DType, IReadOnlyList<long> Shape, long Begin, long End)
{
    /// <summary>Product of the dimensions (1 for a scalar, shape []).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d; // cannot overflow: the reader checked the product at open
            return n;
        }
    }

    public long ByteLength => End - Begin;

    public string ShapeText => FormatShape(Shape);

    internal static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}

/// <summary>
/// A safetensors file opened for reading (format: https://github.com/huggingface/safetensors, "Format").
/// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
/// {"__metadata__": {str: str}?, key: {"dtype": str, "shape": [int], "data_offsets": [begin, end]}, ...},
/// then the data buffer. <see cref="Open(string)"/> validates the whole header before returning, as strictly
/// as the reference implementation (no duplicate keys, no unknown fields, offsets tile the buffer exactly),
/// so every later read is in bounds. Reads go straight from the file into the caller's array with positional
/// reads (no memory map, no second copy of the tensor); they are safe to run from several threads at once.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused before anything is allocated (the reference caps at 100 MB).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly ByteSource _source;
    private readonly long _dataStart;
    private readonly Dictionary<string, int> _index;
    private readonly TensorInfo[] _tensors;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensors in the order the header lists them.</summary>
    public IReadOnlyList<TensorInfo> Tensors => _tensors;

    /// <summary>Bytes in the data buffer (file length minus 8 minus header length).</summary>
    public long DataLength { get; }

    private SafeTensorsFile(string path, ByteSource source, long dataStart, long dataLength, TensorInfo[] tensors,
        Dictionary<string, string> metadata)
    {
        Path = path;
        _source = source;
        _dataStart = dataStart;
        DataLength = dataLength;
        _tensors = tensors;
        Metadata = metadata;
        _index = new Dictionary<string, int>(tensors.Length, StringComparer.Ordinal);
        for (int i = 0; i < tensors.Length; i++) _index.Add(tensors[i].Key, i);
    }

    /// <summary>Opens and validates a file. Any problem with its content, or a file that cannot be opened,
    /// gives a <see cref="TensorFileException"/> naming <paramref name="path"/>.</summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        SafeFileHandle handle;
        try
        {
            // FileShare.Delete lets a writer rename a new version over this file while it is open (we keep reading the old one).
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new TensorFileException(path, $"cannot open: {e.Message}", e);
        }
        var source = new FileByteSource(handle, path);
        try
        {
            return Parse(path, source);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Reads a safetensors image held in memory; <paramref name="name"/> stands for the path in messages.
    /// The memory must stay unchanged while the returned object is used.</summary>
    public static SafeTensorsFile Open(ReadOnlyMemory<byte> bytes, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Parse(name, new MemoryByteSource(bytes, name));
    }

    public bool Contains(string key) => _index.ContainsKey(key);

    /// <summary>The tensor named <paramref name="key"/>; a <see cref="TensorFileException"/> naming file and key if absent.</summary>
    public TensorInfo Info(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_index.TryGetValue(key, out int i)) return _tensors[i];
        string hint = _tensors.Length == 0 ? "the file holds no tensors"
            : $"the file holds {_tensors.Length} tensor{(_tensors.Length == 1 ? "" : "s")}, e.g. {string.Join(", ", _tensors.Take(3).Select(t => TensorFileException.Quote(t.Key)))}";
        throw new TensorFileException(Path, key, $"not in the file ({hint})");
    }

    /// <summary>Reads a float tensor (F32, F16, BF16 or F64) into a new float32 array.</summary>
    public float[] ReadFloat32(string key)
    {
        var info = Info(key);
        RequireFloat(info);
        // Uninitialised: the read overwrites every element or throws, and zeroing 400 MB first costs real time.
        var result = GC.AllocateUninitializedArray<float>(CheckedArrayLength(info));
        ReadFloat32(info, result);
        return result;
    }

    /// <summary>Reads a float tensor into <paramref name="destination"/>, whose length must equal the element count.</summary>
    public void ReadFloat32(string key, Span<float> destination)
    {
        var info = Info(key);
        RequireFloat(info);
        if (destination.Length != info.ElementCount)
            throw new ArgumentException(
                $"{Path}: tensor {TensorFileException.Quote(key)} has {info.ElementCount} elements (shape {info.ShapeText}), destination holds {destination.Length}",
                nameof(destination));
        ReadFloat32(info, destination);
    }

    /// <summary>Reads an integer tensor (I64, I32, I16, I8, U8, U16, U32, or U64 below 2^63) into a new long array.</summary>
    public long[] ReadInt64(string key)
    {
        var info = Info(key);
        int size = DTypes.SizeOf(info.DType);
        if (!DTypes.IsInteger(info.DType))
            throw new TensorFileException(Path, key, $"dtype {info.DType} is not an integer type");
        var result = GC.AllocateUninitializedArray<long>(CheckedArrayLength(info));
        if (info.DType == "I64")
        {
            ReadRaw(info.Begin, MemoryMarshal.AsBytes(result.AsSpan()));
            return result;
        }
        string dtype = info.DType;
        ConvertInChunks(info, size, result.AsSpan(), (bytes, dst) =>
        {
            switch (dtype)
            {
                case "I32": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes[(4 * i)..]); break;
                case "U32": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(4 * i)..]); break;
                case "I16": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(bytes[(2 * i)..]); break;
                case "U16": for (int i = 0; i < dst.Length; i++) dst[i] = BinaryPrimitives.ReadUInt16LittleEndian(bytes[(2 * i)..]); break;
                case "I8": for (int i = 0; i < dst.Length; i++) dst[i] = (sbyte)bytes[i]; break;
                case "U8": for (int i = 0; i < dst.Length; i++) dst[i] = bytes[i]; break;
                case "U64":
                    for (int i = 0; i < dst.Length; i++)
                    {
                        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(8 * i)..]);
                        dst[i] = v <= long.MaxValue ? (long)v
                            : throw new TensorFileException(Path, info.Key, $"U64 value {v} does not fit in a signed 64-bit integer");
                    }
                    break;
                default: throw new InvalidOperationException(dtype);
            }
        });
        return result;
    }

    public void Dispose() => _source.Dispose();

    // ---------------------------------------------------------------- reading

    private void RequireFloat(TensorInfo info)
    {
        if (!DTypes.IsFloat(info.DType))
            throw new TensorFileException(Path, info.Key, $"dtype {info.DType} cannot be read as float32 (expected F32, F16, BF16 or F64)");
    }

    private int CheckedArrayLength(TensorInfo info)
    {
        long n = info.ElementCount;
        if (n > Array.MaxLength)
            throw new TensorFileException(Path, info.Key, $"{n} elements (shape {info.ShapeText}) do not fit in one array");
        return (int)n;
    }

    private void ReadFloat32(TensorInfo info, Span<float> destination)
    {
        switch (info.DType)
        {
            case "F32":
                // Little-endian float32 on disk is the in-memory layout: read the bytes straight into the result.
                var bytes = MemoryMarshal.AsBytes(destination);
                ReadRaw(info.Begin, bytes);
                break;
            case "F16":
                ConvertInChunks(info, 2, destination, (b, d) => TensorConvert.HalfToSingle(MemoryMarshal.Cast<byte, ushort>(b), d));
                break;
            case "BF16":
                ConvertInChunks(info, 2, destination, (b, d) => TensorConvert.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(b), d));
                break;
            case "F64":
                ConvertInChunks(info, 8, destination, (b, d) => TensorConvert.DoubleToSingle(MemoryMarshal.Cast<byte, double>(b), d));
                break;
            default:
                throw new InvalidOperationException(info.DType);
        }
    }

    private delegate void ChunkConverter<T>(ReadOnlySpan<byte> source, Span<T> destination);

    /// <summary>Reads the tensor through one pooled buffer of at most 1 MiB and converts it piece by piece,
    /// so a conversion never holds the whole tensor twice.</summary>
    private void ConvertInChunks<T>(TensorInfo info, int elementSize, Span<T> destination, ChunkConverter<T> convert)
    {
        const int chunkBytes = 1 << 20;
        int perChunk = chunkBytes / elementSize;
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(chunkBytes, Math.Max(info.ByteLength, 1)));
        try
        {
            long offset = info.Begin;
            for (int done = 0; done < destination.Length;)
            {
                int count = Math.Min(perChunk, destination.Length - done);
                var chunk = buffer.AsSpan(0, count * elementSize);
                ReadRaw(offset, chunk);
                convert(chunk, destination.Slice(done, count));
                done += count;
                offset += chunk.Length;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void ReadRaw(long dataOffset, Span<byte> destination) => _source.Read(_dataStart + dataOffset, destination);

    // ---------------------------------------------------------------- header

    private static SafeTensorsFile Parse(string path, ByteSource source)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors reading needs a little-endian machine");
        long fileLength = source.Length;
        if (fileLength < 8)
            throw new TensorFileException(path, $"file is {fileLength} bytes, shorter than the 8-byte header length; not a safetensors file");
        Span<byte> prefix = stackalloc byte[8];
        source.Read(0, prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes)
            throw new TensorFileException(path, $"header length {headerLength} bytes is over the {MaxHeaderBytes}-byte limit; not a safetensors file or corrupt");
        if ((long)headerLength > fileLength - 8)
            throw new TensorFileException(path, $"header length {headerLength} bytes runs past the end of the file ({fileLength} bytes); file truncated or not safetensors");
        if (headerLength == 0)
            throw new TensorFileException(path, "header is empty (length 0); expected a JSON object");

        byte[] header = new byte[headerLength];
        source.Read(8, header);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        var (tensors, metadata) = HeaderParser.Parse(header, path, dataLength);
        return new SafeTensorsFile(path, source, dataStart, dataLength, tensors, metadata);
    }

    /// <summary>Strict reader of the JSON header: rejects duplicates, unknown fields and wrong types with a message
    /// naming the key, then checks sizes and that the offsets tile the data buffer.</summary>
    private static class HeaderParser
    {
        private const string MetadataKey = "__metadata__";

        public static (TensorInfo[] Tensors, Dictionary<string, string> Metadata) Parse(byte[] json, string path, long dataLength)
        {
            if (!Utf8.IsValid(json))
                throw new TensorFileException(path, "header is not valid UTF-8");
            var tensors = new List<TensorInfo>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            string? current = null; // the key being parsed, for messages about malformed JSON inside an entry
            try
            {
                var reader = new Utf8JsonReader(json, new JsonReaderOptions
                {
                    CommentHandling = JsonCommentHandling.Disallow,
                    AllowTrailingCommas = false,
                    MaxDepth = 16,
                });
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                    throw new TensorFileException(path, $"header must be a JSON object, found {Describe(ref reader)}");
                while (true)
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.EndObject) break;
                    string key = reader.GetString()!; // the reader guarantees a property name here
                    current = key;
                    if (!seen.Add(key))
                        throw new TensorFileException(path, key == MetadataKey ? null : key,
                            key == MetadataKey ? "__metadata__ appears twice in the header" : "appears twice in the header");
                    reader.Read();
                    if (key == MetadataKey)
                    {
                        ReadMetadata(ref reader, path, metadata);
                    }
                    else
                    {
                        tensors.Add(ReadEntry(ref reader, path, key));
                    }
                    current = null;
                }
                if (reader.Read()) // isFinalBlock: only whitespace (the reference pads with spaces) may follow
                    throw new TensorFileException(path, "header has content after the closing '}'");
            }
            catch (JsonException e)
            {
                string where = current is null ? "" : $" (in the entry for {TensorFileException.Quote(current)})";
                throw new TensorFileException(path, $"header is not valid JSON{where}: {e.Message}", e);
            }
            catch (InvalidOperationException e) // GetString on an escape that is not valid UTF-16 (lone surrogate)
            {
                throw new TensorFileException(path, $"header has a string that is not valid text: {e.Message}", e);
            }

            var array = tensors.ToArray();
            CheckCoverage(array, path, dataLength);
            return (array, metadata);
        }

        private static void ReadMetadata(ref Utf8JsonReader reader, string path, Dictionary<string, string> metadata)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new TensorFileException(path, $"__metadata__ must be an object of strings, found {Describe(ref reader)}");
            while (true)
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.EndObject) return;
                string name = reader.GetString()!;
                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                    throw new TensorFileException(path, $"__metadata__ value for {TensorFileException.Quote(name)} must be a string, found {Describe(ref reader)}");
                if (!metadata.TryAdd(name, reader.GetString()!))
                    throw new TensorFileException(path, $"__metadata__ has {TensorFileException.Quote(name)} twice");
            }
        }

        private static TensorInfo ReadEntry(ref Utf8JsonReader reader, string path, string key)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new TensorFileException(path, key, $"entry must be an object with dtype, shape and data_offsets, found {Describe(ref reader)}");
            string? dtype = null;
            long[]? shape = null, offsets = null;
            while (true)
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.EndObject) break;
                string field = reader.GetString()!;
                reader.Read();
                switch (field)
                {
                    case "dtype":
                        if (dtype is not null) throw new TensorFileException(path, key, "field 'dtype' appears twice");
                        if (reader.TokenType != JsonTokenType.String)
                            throw new TensorFileException(path, key, $"dtype must be a string, found {Describe(ref reader)}");
                        dtype = reader.GetString()!;
                        break;
                    case "shape":
                        if (shape is not null) throw new TensorFileException(path, key, "field 'shape' appears twice");
                        shape = ReadIntegers(ref reader, path, key, "shape");
                        break;
                    case "data_offsets":
                        if (offsets is not null) throw new TensorFileException(path, key, "field 'data_offsets' appears twice");
                        offsets = ReadIntegers(ref reader, path, key, "data_offsets");
                        break;
                    default:
                        throw new TensorFileException(path, key, $"unexpected field {TensorFileException.Quote(field)} (allowed: dtype, shape, data_offsets)");
                }
            }
            if (dtype is null) throw new TensorFileException(path, key, "field 'dtype' is missing");
            if (shape is null) throw new TensorFileException(path, key, "field 'shape' is missing");
            if (offsets is null) throw new TensorFileException(path, key, "field 'data_offsets' is missing");
            if (offsets.Length != 2)
                throw new TensorFileException(path, key, $"data_offsets must hold 2 numbers [begin, end], found {offsets.Length}");

            int size = DTypes.SizeOf(dtype);
            if (size == 0)
                throw new TensorFileException(path, key, $"unknown dtype {TensorFileException.Quote(dtype)} (known: {string.Join(", ", DTypes.Known)})");
            long count = 1;
            foreach (long d in shape)
            {
                if (d != 0 && count > long.MaxValue / d)
                    throw new TensorFileException(path, key, $"shape {TensorInfo.FormatShape(shape)} has more elements than fit in 64 bits");
                count *= d;
            }
            long begin = offsets[0], end = offsets[1];
            if (begin > end)
                throw new TensorFileException(path, key, $"data_offsets [{begin}, {end}] begin after they end");
            if (count > long.MaxValue / size)
                throw new TensorFileException(path, key, $"shape {TensorInfo.FormatShape(shape)} of {dtype} needs more bytes than fit in 64 bits");
            long needed = count * size;
            if (end - begin != needed)
                throw new TensorFileException(path, key,
                    $"shape {TensorInfo.FormatShape(shape)} of {dtype} needs {needed} bytes, data_offsets [{begin}, {end}] hold {end - begin}");
            return new TensorInfo(key, dtype, shape, begin, end);
        }

        /// <summary>An array of integers in [0, 2^63); rejects fractions, exponents, negatives and other tokens.</summary>
        private static long[] ReadIntegers(ref Utf8JsonReader reader, string path, string key, string field)
        {
            if (reader.TokenType != JsonTokenType.StartArray)
                throw new TensorFileException(path, key, $"{field} must be an array of integers, found {Describe(ref reader)}");
            var values = new List<long>();
            while (true)
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.EndArray) return values.ToArray();
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v) || v < 0)
                    throw new TensorFileException(path, key,
                        $"{field}[{values.Count}] must be a non-negative integer below 2^63, found {Describe(ref reader)}");
                values.Add(v);
            }
        }

        /// <summary>The data buffer must be covered exactly: sorted by offset, each tensor starts where the previous
        /// ends, the first at 0 and the last at the buffer's end (as the reference implementation demands).</summary>
        private static void CheckCoverage(TensorInfo[] tensors, string path, long dataLength)
        {
            foreach (var t in tensors)
            {
                if (t.End > dataLength)
                    throw new TensorFileException(path, t.Key,
                        $"data_offsets [{t.Begin}, {t.End}] run past the end of the data buffer ({dataLength} bytes); file truncated?");
            }
            var order = new int[tensors.Length];
            for (int i = 0; i < order.Length; i++) order[i] = i;
            Array.Sort(order, (a, b) =>
            {
                int c = tensors[a].Begin.CompareTo(tensors[b].Begin);
                return c != 0 ? c : tensors[a].End.CompareTo(tensors[b].End);
            });
            long expected = 0;
            string? previous = null;
            foreach (int i in order)
            {
                var t = tensors[i];
                if (t.Begin < expected)
                    throw new TensorFileException(path, t.Key,
                        $"bytes [{t.Begin}, {t.End}) overlap tensor {TensorFileException.Quote(previous!)} which ends at {expected}");
                if (t.Begin > expected)
                    throw new TensorFileException(path, t.Key,
                        $"begins at byte {t.Begin} but {(previous is null ? "the data buffer starts at 0" : $"tensor {TensorFileException.Quote(previous)} ends at {expected}")}: gaps of unused bytes are not allowed");
                expected = t.End;
                previous = t.Key;
            }
            if (expected != dataLength)
                throw new TensorFileException(path,
                    $"data buffer has {dataLength - expected} bytes after the last tensor (tensors end at {expected}, buffer is {dataLength} bytes)");
        }

        private static string Describe(ref Utf8JsonReader reader)
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.Number:
                case JsonTokenType.String:
                    var raw = reader.HasValueSequence ? reader.ValueSequence.ToArray() : reader.ValueSpan.ToArray();
                    string text = Encoding.UTF8.GetString(raw);
                    return reader.TokenType == JsonTokenType.Number
                        ? $"number {(text.Length > 40 ? text[..40] + "…" : text)}"
                        : $"string {TensorFileException.Quote(text, 40)}";
                case JsonTokenType.StartObject: return "an object";
                case JsonTokenType.StartArray: return "an array";
                case JsonTokenType.True: return "true";
                case JsonTokenType.False: return "false";
                case JsonTokenType.Null: return "null";
                case JsonTokenType.None: return "nothing";
                default: return reader.TokenType.ToString();
            }
        }
    }

    // ---------------------------------------------------------------- byte sources

    private abstract class ByteSource : IDisposable
    {
        public abstract long Length { get; }

        /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/>; the caller has checked bounds
        /// against <see cref="Length"/> at open, so a short read means the file shrank since.</summary>
        public abstract void Read(long offset, Span<byte> destination);

        public abstract void Dispose();
    }

    private sealed class FileByteSource(SafeFileHandle handle, string path) : ByteSource
    {
        private readonly long _length = RandomAccess.GetLength(handle);

        public override long Length => _length;

        public override void Read(long offset, Span<byte> destination)
        {
            ObjectDisposedException.ThrowIf(handle.IsClosed, typeof(SafeTensorsFile));
            while (!destination.IsEmpty)
            {
                // RandomAccess.Read takes at most int.MaxValue bytes per call on some platforms; loop either way.
                int n;
                try
                {
                    n = RandomAccess.Read(handle, destination, offset);
                }
                catch (IOException e)
                {
                    throw new TensorFileException(path, $"read failed at byte {offset}: {e.Message}", e);
                }
                if (n <= 0)
                    throw new TensorFileException(path, $"file ended at byte {offset} while reading; it was changed or truncated after it was opened");
                destination = destination[n..];
                offset += n;
            }
        }

        public override void Dispose() => handle.Dispose();
    }

    private sealed class MemoryByteSource(ReadOnlyMemory<byte> bytes, string name) : ByteSource
    {
        public override long Length => bytes.Length;

        public override void Read(long offset, Span<byte> destination)
        {
            if (offset < 0 || offset > bytes.Length - destination.Length)
                throw new TensorFileException(name, $"read of {destination.Length} bytes at {offset} is outside the {bytes.Length}-byte image");
            bytes.Span.Slice((int)offset, destination.Length).CopyTo(destination);
        }

        public override void Dispose() { }
    }
}

/// <summary>The safetensors dtype names and their sizes in bytes.</summary>
internal static class DTypes
{
    public static readonly string[] Known = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"];

    /// <summary>Bytes per element, or 0 for an unknown name.</summary>
    public static int SizeOf(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => 0,
    };

    /// <summary>The float types this engine reads as float32.</summary>
    public static bool IsFloat(string dtype) => dtype is "F32" or "F16" or "BF16" or "F64";

    public static bool IsInteger(string dtype) => dtype is "I64" or "I32" or "I16" or "I8" or "U64" or "U32" or "U16" or "U8";
}
