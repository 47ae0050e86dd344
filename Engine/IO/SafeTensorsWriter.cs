using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Tp7.Engine.IO;

/// <summary>Writes float32 tensors as a safetensors file that PyTorch's safetensors library reads.</summary>
public static class SafeTensorsWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> (in the given order, data contiguous) with optional string metadata.
    /// The file appears atomically: it is written to a temporary file beside <paramref name="path"/>, flushed to
    /// disk, then renamed over it, so a crash never leaves a half-written file under the final name.
    /// The header is padded with spaces so the data starts at a multiple of 8 bytes (as the reference does).
    /// </summary>
    public static void Write(string path, IEnumerable<(string Key, long[] Shape, ReadOnlyMemory<float> Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        byte[] header = BuildHeader(path, list, metadata);

        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        string temp = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                stream.Write(prefix);
                stream.Write(header);
                foreach (var t in list)
                {
                    // Spans over more than 2^31 bytes cannot exist: write float32 data in slices of 2^28 elements.
                    var data = t.Data.Span;
                    for (int start = 0; start < data.Length; start += 1 << 28)
                        stream.Write(MemoryMarshal.AsBytes(data.Slice(start, Math.Min(1 << 28, data.Length - start))));
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static byte[] BuildHeader(string path, List<(string Key, long[] Shape, ReadOnlyMemory<float> Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors writing needs a little-endian machine");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var json = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata)
                    w.WriteString(k, v ?? throw new ArgumentException($"{path}: metadata {TensorFileException.Quote(k)} is null", nameof(metadata)));
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (key, shape, data) in tensors)
            {
                if (string.IsNullOrEmpty(key) || key == "__metadata__")
                    throw new ArgumentException($"{path}: tensor name {TensorFileException.Quote(key ?? "")} is not allowed", nameof(tensors));
                if (!seen.Add(key))
                    throw new ArgumentException($"{path}: tensor {TensorFileException.Quote(key)} is given twice", nameof(tensors));
                ArgumentNullException.ThrowIfNull(shape);
                long count = 1;
                foreach (long d in shape)
                {
                    if (d < 0) throw new ArgumentException($"{path}: tensor {TensorFileException.Quote(key)} has a negative dimension in shape {TensorInfo.FormatShape(shape)}", nameof(tensors));
                    count = checked(count * d);
                }
                if (count != data.Length)
                    throw new ArgumentException(
                        $"{path}: tensor {TensorFileException.Quote(key)} has shape {TensorInfo.FormatShape(shape)} ({count} elements) but {data.Length} values", nameof(tensors));
                w.WriteStartObject(key);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (long d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += 4L * data.Length;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int padded = (json.WrittenCount + 7) / 8 * 8; // 8-byte prefix + header: data starts 8-aligned
        var header = new byte[padded];
        json.WrittenSpan.CopyTo(header);
        header.AsSpan(json.WrittenCount).Fill((byte)' ');
        return header;
    }
}
