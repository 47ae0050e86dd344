using System.Buffers.Binary;
using System.Text;
using Tp7.Engine.IO;

namespace Tp7.Tests;

/// <summary>Builds safetensors images byte by byte, independently of <see cref="SafeTensorsWriter"/>.</summary>
internal static class SafeTensorsBytes
{
    /// <summary>8-byte length prefix (the header's real length unless <paramref name="claimedHeaderLength"/>),
    /// the header text as UTF-8, then <paramref name="data"/>.</summary>
    public static byte[] Build(string header, byte[] data, ulong? claimedHeaderLength = null) =>
        Build(Encoding.UTF8.GetBytes(header), data, claimedHeaderLength);

    public static byte[] Build(byte[] header, byte[] data, ulong? claimedHeaderLength = null)
    {
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, claimedHeaderLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    /// <summary>Header text with ' for " so tests can write JSON inside C# attributes.</summary>
    public static string Json(string singleQuoted) => singleQuoted.Replace('\'', '"');

    public static byte[] Halves(params ushort[] bits)
    {
        var b = new byte[bits.Length * 2];
        for (int i = 0; i < bits.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2 * i), bits[i]);
        return b;
    }
}

/// <summary>A scratch directory removed after each test class instance.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("tp7-st-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

public sealed class SafeTensorsRoundTripTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public void WriteThenReadGivesTheSameTensorsBitForBit()
    {
        var rng = new Random(7);
        float[] w = Enumerable.Range(0, 5 * 3).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        w[0] = float.NegativeInfinity; w[1] = -0.0f; w[2] = float.Epsilon; w[3] = float.NaN;
        float[] b = [1.5f, -2.25f, 3e-38f];
        float[] scalar = [42f];
        string path = _dir.File("model.safetensors");
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "π ≈ 3.14 \"quoted\"" };
        SafeTensorsWriter.Write(path,
        [
            ("layer.weight", [5, 3], w),
            ("layer.bias", [3], b),
            ("scale", [], scalar),
            ("empty", [0, 4], ReadOnlyMemory<float>.Empty),
        ], meta);

        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(["layer.weight", "layer.bias", "scale", "empty"], f.Tensors.Select(t => t.Key));
        Assert.Equal([5L, 3L], f.Info("layer.weight").Shape);
        Assert.Equal("F32", f.Info("layer.weight").DType);
        Assert.Empty(f.Info("scale").Shape);
        Assert.Equal(1, f.Info("scale").ElementCount);
        Assert.Equal(0, f.Info("empty").ElementCount);
        Assert.Equal(meta, f.Metadata.OrderBy(kv => kv.Key).ToDictionary());
        Assert.Equal(w.Select(BitConverter.SingleToInt32Bits), f.ReadFloat32("layer.weight").Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(b, f.ReadFloat32("layer.bias"));
        Assert.Equal(scalar, f.ReadFloat32("scale"));
        Assert.Empty(f.ReadFloat32("empty"));

        var into = new float[3];
        f.ReadFloat32("layer.bias", into);
        Assert.Equal(b, into);

        // The reference implementation pads the header so the data starts 8-byte aligned.
        byte[] raw = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(raw);
        Assert.Equal(0UL, (8 + n) % 8);
        Assert.Equal(raw.LongLength, 8 + (long)n + 4L * (15 + 3 + 1));
    }

    [Fact]
    public void WriteReplacesAnExistingFileAndLeavesNoTemporaryFiles()
    {
        string path = _dir.File("w.safetensors");
        SafeTensorsWriter.Write(path, [("a", [2], new float[] { 1, 2 })]);
        SafeTensorsWriter.Write(path, [("b", [1], new float[] { 3 })]);
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(["b"], f.Tensors.Select(t => t.Key));
        Assert.Equal([3f], f.ReadFloat32("b"));
        Assert.Equal(["w.safetensors"], Directory.GetFiles(_dir.Path).Select(System.IO.Path.GetFileName));
    }

    [Fact]
    public void WriteRejectsDataThatDoesNotMatchTheShapeAndKeepsTheOldFile()
    {
        string path = _dir.File("keep.safetensors");
        SafeTensorsWriter.Write(path, [("a", [1], new float[] { 9 })]);
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [("x.weight", [2, 3], new float[5])]));
        Assert.Contains("'x.weight' has shape [2, 3] (6 elements) but 5 values", e.Message);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [("a", [1], new float[1]), ("a", [1], new float[1])]));
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal([9f], f.ReadFloat32("a"));
        Assert.Single(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void ReplacingAFileWhileItIsOpenKeepsTheOpenedVersionReadable()
    {
        string path = _dir.File("swap.safetensors");
        SafeTensorsWriter.Write(path, [("a", [2], new float[] { 1, 2 })]);
        using var old = SafeTensorsFile.Open(path);
        SafeTensorsWriter.Write(path, [("a", [3], new float[] { 7, 8, 9 })]);
        Assert.Equal([1f, 2f], old.ReadFloat32("a"));
        using var fresh = SafeTensorsFile.Open(path);
        Assert.Equal([7f, 8f, 9f], fresh.ReadFloat32("a"));
    }

    [Fact]
    public void SpanReadChecksTheDestinationLength()
    {
        string path = _dir.File("s.safetensors");
        SafeTensorsWriter.Write(path, [("fc.weight", [2, 2], new float[4])]);
        using var f = SafeTensorsFile.Open(path);
        var e = Assert.Throws<ArgumentException>(() => f.ReadFloat32("fc.weight", new float[3]));
        Assert.Contains("'fc.weight' has 4 elements (shape [2, 2]), destination holds 3", e.Message);
    }

    [Fact]
    public void AbsentKeyNamesTheFileAndTheKey()
    {
        string path = _dir.File("k.safetensors");
        SafeTensorsWriter.Write(path, [("features.0.weight", [1], new float[1])]);
        using var f = SafeTensorsFile.Open(path);
        Assert.False(f.Contains("features.1.weight"));
        var e = Assert.Throws<TensorFileException>(() => f.ReadFloat32("features.1.weight"));
        Assert.Equal($"{path}: tensor 'features.1.weight': not in the file (the file holds 1 tensor, e.g. 'features.0.weight')", e.Message);
        Assert.Equal("features.1.weight", e.Key);
    }

    [Fact]
    public void SpacePaddedHeaderAsTorchWritesItIsAccepted()
    {
        string header = SafeTensorsBytes.Json("  {'x':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}") + new string(' ', 13);
        using var f = SafeTensorsFile.Open(SafeTensorsBytes.Build(header, BitConverter.GetBytes(2.5f)), "padded");
        Assert.Equal([2.5f], f.ReadFloat32("x"));
        Assert.Empty(f.Metadata);
    }
}

public class SafeTensorsConversionTests
{
    [Fact]
    public void F16KnownValuesIncludingSubnormalsAndInfinities()
    {
        ushort[] bits = [0x3C00, 0xC000, 0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x3555, 0x7E00];
        float[] want = [1f, -2f, 0f, -0f, MathF.Pow(2, -24), 1023 * MathF.Pow(2, -24), MathF.Pow(2, -14), 65504f,
            float.PositiveInfinity, float.NegativeInfinity, 0.333251953125f, float.NaN];
        var header = SafeTensorsBytes.Json($"{{'h':{{'dtype':'F16','shape':[{bits.Length}],'data_offsets':[0,{2 * bits.Length}]}}}}");
        using var f = SafeTensorsFile.Open(SafeTensorsBytes.Build(header, SafeTensorsBytes.Halves(bits)), "f16");
        float[] got = f.ReadFloat32("h");
        Assert.Equal(want.Select(BitConverter.SingleToInt32Bits).Take(11), got.Select(BitConverter.SingleToInt32Bits).Take(11));
        Assert.True(float.IsNaN(got[11]));
    }

    [Fact]
    public void F16EveryBitPatternMatchesTheBclConversion()
    {
        // 65,536 + 5 values: the vector path covers the bulk, the scalar tail the last 5.
        ushort[] bits = Enumerable.Range(0, 65536 + 5).Select(i => (ushort)(i * 40503)).ToArray(); // odd multiplier: a permutation
        var header = SafeTensorsBytes.Json($"{{'h':{{'dtype':'F16','shape':[{bits.Length}],'data_offsets':[0,{2 * bits.Length}]}}}}");
        using var f = SafeTensorsFile.Open(SafeTensorsBytes.Build(header, SafeTensorsBytes.Halves(bits)), "f16-all");
        float[] got = f.ReadFloat32("h");
        for (int i = 0; i < bits.Length; i++)
        {
            float want = (float)BitConverter.UInt16BitsToHalf(bits[i]);
            if (float.IsNaN(want)) Assert.True(float.IsNaN(got[i]), $"0x{bits[i]:X4}");
            else Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(got[i]), $"0x{bits[i]:X4}: want {want:R}, got {got[i]:R}");
        }
    }

    [Fact]
    public void BF16KnownValuesAndEveryBitPattern()
    {
        ushort[] known = [0x3F80, 0xC040, 0x4049, 0x0001, 0x8000, 0x7F80, 0xFF80, 0x7F7F];
        float[] want = [1f, -3f, 3.140625f, BitConverter.UInt32BitsToSingle(0x0001_0000), -0f, float.PositiveInfinity,
            float.NegativeInfinity, BitConverter.UInt32BitsToSingle(0x7F7F_0000)];
        ushort[] bits = [.. known, .. Enumerable.Range(0, 65536 + 3).Select(i => (ushort)(i * 40503))];
        var header = SafeTensorsBytes.Json($"{{'b':{{'dtype':'BF16','shape':[{bits.Length}],'data_offsets':[0,{2 * bits.Length}]}}}}");
        using var f = SafeTensorsFile.Open(SafeTensorsBytes.Build(header, SafeTensorsBytes.Halves(bits)), "bf16");
        float[] got = f.ReadFloat32("b");
        Assert.Equal(want.Select(BitConverter.SingleToInt32Bits), got.Take(known.Length).Select(BitConverter.SingleToInt32Bits));
        for (int i = known.Length; i < bits.Length; i++)
            Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(got[i]));
    }

    [Fact]
    public void F64AndIntegerTensors()
    {
        var data = new List<byte>();
        foreach (double d in new[] { 0.1, -1e300, 5e-324 }) data.AddRange(BitConverter.GetBytes(d));
        foreach (long l in new[] { -1L, long.MaxValue }) data.AddRange(BitConverter.GetBytes(l));
        foreach (int l in new[] { 7, -8, 999 }) data.AddRange(BitConverter.GetBytes(l));
        data.AddRange(new byte[] { 255, 1 }); // U8
        var header = SafeTensorsBytes.Json(
            "{'d':{'dtype':'F64','shape':[3],'data_offsets':[0,24]},'y':{'dtype':'I64','shape':[2],'data_offsets':[24,40]}," +
            "'z':{'dtype':'I32','shape':[3],'data_offsets':[40,52]},'u':{'dtype':'U8','shape':[2],'data_offsets':[52,54]}}");
        using var f = SafeTensorsFile.Open(SafeTensorsBytes.Build(header, data.ToArray()), "ints");
        Assert.Equal([0.1f, float.NegativeInfinity, 0f], f.ReadFloat32("d"));
        Assert.Equal([-1L, long.MaxValue], f.ReadInt64("y"));
        Assert.Equal([7L, -8L, 999L], f.ReadInt64("z"));
        Assert.Equal([255L, 1L], f.ReadInt64("u"));
        var e = Assert.Throws<TensorFileException>(() => f.ReadFloat32("y"));
        Assert.Equal("ints: tensor 'y': dtype I64 cannot be read as float32 (expected F32, F16, BF16 or F64)", e.Message);
        e = Assert.Throws<TensorFileException>(() => f.ReadInt64("d"));
        Assert.Equal("ints: tensor 'd': dtype F64 is not an integer type", e.Message);
    }
}

/// <summary>Every malformed file gives one TensorFileException whose one-line message names the file and the key.</summary>
public sealed class SafeTensorsHostileFileTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private TensorFileException OpenFails(byte[] bytes, string? key, string fragment)
    {
        string path = _dir.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<TensorFileException>(() => { using var _ = SafeTensorsFile.Open(path); });
        Assert.StartsWith(path + ": ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(fragment, e.Message);
        Assert.Equal(path, e.FilePath);
        Assert.Equal(key, e.Key);
        if (key is not null) Assert.StartsWith($"{path}: tensor {TensorFileException.Quote(key)}: ", e.Message);
        return e;
    }

    [Theory]
    [InlineData("invalid JSON", "{'w': ", 0, null, "header is not valid JSON")]
    [InlineData("JSON not an object", "[1, 2]", 0, null, "header must be a JSON object, found an array")]
    [InlineData("JSON a string", "'w'", 0, null, "header must be a JSON object, found string 'w'")]
    [InlineData("content after the object", "{} {}", 0, null, "header is not valid JSON")]
    [InlineData("entry not an object", "{'w': 5}", 0, "w", "entry must be an object with dtype, shape and data_offsets, found number 5")]
    [InlineData("missing dtype", "{'w': {'shape':[1],'data_offsets':[0,4]}}", 4, "w", "field 'dtype' is missing")]
    [InlineData("missing shape", "{'w': {'dtype':'F32','data_offsets':[0,4]}}", 4, "w", "field 'shape' is missing")]
    [InlineData("missing offsets", "{'w': {'dtype':'F32','shape':[1]}}", 4, "w", "field 'data_offsets' is missing")]
    [InlineData("extra field", "{'w': {'dtype':'F32','shape':[1],'data_offsets':[0,4],'strides':[1]}}", 4, "w", "unexpected field 'strides'")]
    [InlineData("duplicate field", "{'w': {'dtype':'F32','dtype':'F16','shape':[1],'data_offsets':[0,4]}}", 4, "w", "field 'dtype' appears twice")]
    [InlineData("dtype not a string", "{'w': {'dtype':32,'shape':[1],'data_offsets':[0,4]}}", 4, "w", "dtype must be a string, found number 32")]
    [InlineData("shape not an array", "{'w': {'dtype':'F32','shape':'1','data_offsets':[0,4]}}", 4, "w", "shape must be an array of integers, found string '1'")]
    [InlineData("shape holds null", "{'w': {'dtype':'F32','shape':[null],'data_offsets':[0,4]}}", 4, "w", "shape[0] must be a non-negative integer below 2^63, found null")]
    [InlineData("negative dimension", "{'w': {'dtype':'F32','shape':[2,-1],'data_offsets':[0,4]}}", 4, "w", "shape[1] must be a non-negative integer below 2^63, found number -1")]
    [InlineData("fractional dimension", "{'w': {'dtype':'F32','shape':[1.5],'data_offsets':[0,4]}}", 4, "w", "shape[0] must be a non-negative integer below 2^63, found number 1.5")]
    [InlineData("exponent offset", "{'w': {'dtype':'F32','shape':[1],'data_offsets':[0,4e0]}}", 4, "w", "data_offsets[1] must be a non-negative integer below 2^63, found number 4e0")]
    [InlineData("negative offset", "{'w': {'dtype':'F32','shape':[1],'data_offsets':[-4,0]}}", 4, "w", "data_offsets[0] must be a non-negative integer below 2^63, found number -4")]
    [InlineData("number past 64 bits", "{'w': {'dtype':'F32','shape':[99999999999999999999],'data_offsets':[0,4]}}", 4, "w", "found number 99999999999999999999")]
    [InlineData("element count overflow", "{'w': {'dtype':'F32','shape':[4294967296,4294967296],'data_offsets':[0,4]}}", 4, "w", "shape [4294967296, 4294967296] has more elements than fit in 64 bits")]
    [InlineData("byte count overflow", "{'w': {'dtype':'F32','shape':[4611686018427387904],'data_offsets':[0,4]}}", 4, "w", "shape [4611686018427387904] of F32 needs more bytes than fit in 64 bits")]
    [InlineData("three offsets", "{'w': {'dtype':'F32','shape':[1],'data_offsets':[0,4,8]}}", 4, "w", "data_offsets must hold 2 numbers [begin, end], found 3")]
    [InlineData("unknown dtype", "{'w': {'dtype':'F33','shape':[1],'data_offsets':[0,4]}}", 4, "w", "unknown dtype 'F33'")]
    [InlineData("size mismatch", "{'w': {'dtype':'F32','shape':[2],'data_offsets':[0,4]}}", 4, "w", "shape [2] of F32 needs 8 bytes, data_offsets [0, 4] hold 4")]
    [InlineData("end past buffer", "{'w': {'dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 4, "w", "data_offsets [0, 8] run past the end of the data buffer (4 bytes)")]
    [InlineData("begin after end", "{'w': {'dtype':'F32','shape':[1],'data_offsets':[8,4]}}", 8, "w", "data_offsets [8, 4] begin after they end")]
    [InlineData("overlap", "{'a': {'dtype':'F32','shape':[2],'data_offsets':[0,8]},'b': {'dtype':'F32','shape':[2],'data_offsets':[4,12]}}", 12, "b", "bytes [4, 12) overlap tensor 'a' which ends at 8")]
    [InlineData("gap", "{'a': {'dtype':'F32','shape':[1],'data_offsets':[0,4]},'b': {'dtype':'F32','shape':[1],'data_offsets':[8,12]}}", 12, "b", "begins at byte 8 but tensor 'a' ends at 4: gaps of unused bytes are not allowed")]
    [InlineData("leading gap", "{'a': {'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8, "a", "begins at byte 4 but the data buffer starts at 0")]
    [InlineData("trailing bytes", "{'a': {'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", 12, null, "data buffer has 8 bytes after the last tensor (tensors end at 4, buffer is 12 bytes)")]
    [InlineData("duplicate key", "{'a': {'dtype':'F32','shape':[1],'data_offsets':[0,4]},'a': {'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8, "a", "appears twice in the header")]
    [InlineData("metadata not an object", "{'__metadata__': [1]}", 0, null, "__metadata__ must be an object of strings, found an array")]
    [InlineData("metadata null", "{'__metadata__': null}", 0, null, "__metadata__ must be an object of strings, found null")]
    [InlineData("metadata value not a string", "{'__metadata__': {'epoch': 3}}", 0, null, "__metadata__ value for 'epoch' must be a string, found number 3")]
    [InlineData("metadata duplicate name", "{'__metadata__': {'a': 'x', 'a': 'y'}}", 0, null, "__metadata__ has 'a' twice")]
    [InlineData("metadata twice", "{'__metadata__': {}, '__metadata__': {}}", 0, null, "__metadata__ appears twice in the header")]
    [InlineData("lone surrogate", "{'\\ud800': {'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", 4, null, "header has a string that is not valid text")]
    [InlineData("newline in a key stays on one line", "{'a\\nb': {'dtype':'Q8','shape':[1],'data_offsets':[0,4]}}", 4, "a\nb", "unknown dtype 'Q8'")]
    public void MalformedHeaderIsRejected(string why, string header, int dataBytes, string? key, string fragment)
    {
        _ = why;
        OpenFails(SafeTensorsBytes.Build(SafeTensorsBytes.Json(header), new byte[dataBytes]), key, fragment);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void FileShorterThanTheLengthPrefix(int length) =>
        OpenFails(new byte[length], null, $"file is {length} bytes, shorter than the 8-byte header length");

    [Fact]
    public void HeaderLengthPastTheEndOfTheFile() =>
        OpenFails(SafeTensorsBytes.Build("{}", [], claimedHeaderLength: 3), null, "header length 3 bytes runs past the end of the file (10 bytes)");

    [Fact]
    public void EmptyHeader() => OpenFails(SafeTensorsBytes.Build("", [1, 2]), null, "header is empty");

    [Theory]
    [InlineData(100UL * 1024 * 1024 + 1)]
    [InlineData(1UL << 40)]
    [InlineData(ulong.MaxValue)]
    public void AbsurdHeaderLengthIsRefusedBeforeAllocating(ulong claimed)
    {
        byte[] bytes = SafeTensorsBytes.Build("{}", [], claimedHeaderLength: claimed);
        long before = GC.GetAllocatedBytesForCurrentThread();
        OpenFails(bytes, null, $"header length {claimed} bytes is over the 104857600-byte limit");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "refusal allocated over 1 MiB");
    }

    [Fact]
    public void HeaderThatIsNotUtf8() =>
        OpenFails(SafeTensorsBytes.Build([(byte)'{', 0xFF, (byte)'}'], []), null, "header is not valid UTF-8");

    [Fact]
    public void TruncatedDataNamesTheFirstTensorThatNoLongerFits()
    {
        string header = SafeTensorsBytes.Json(
            "{'features.0.weight':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},'features.0.bias':{'dtype':'F32','shape':[2],'data_offsets':[8,16]}}");
        byte[] full = SafeTensorsBytes.Build(header, new byte[16]);
        OpenFails(full[..^3], "features.0.bias", "data_offsets [8, 16] run past the end of the data buffer (13 bytes); file truncated?");
    }

    [Fact]
    public void MissingFileIsATensorFileException()
    {
        string path = _dir.File("absent.safetensors");
        var e = Assert.Throws<TensorFileException>(() => SafeTensorsFile.Open(path));
        Assert.StartsWith($"{path}: cannot open: ", e.Message);
    }

    [Fact]
    public void VeryLongKeyIsCutInTheMessage()
    {
        string key = new('k', 100_000);
        var e = OpenFails(SafeTensorsBytes.Build(SafeTensorsBytes.Json($"{{'{key}': 1}}"), []), key, "entry must be an object");
        Assert.True(e.Message.Length < 500, $"message is {e.Message.Length} chars");
    }
}

public class TensorSpecCheckTests
{
    private static SafeTensorsFile File(string header, int dataBytes) =>
        SafeTensorsFile.Open(SafeTensorsBytes.Build(SafeTensorsBytes.Json(header), new byte[dataBytes]), "weights/vgg16.safetensors");

    [Fact]
    public void WrongShapeMissingKeyAndExtraKeyAreAllNamedInOneMessage()
    {
        using var f = File(
            "{'classifier.0.weight':{'dtype':'F32','shape':[4,9],'data_offsets':[0,144]}," +
            "'classifier.0.bias':{'dtype':'F32','shape':[4],'data_offsets':[144,160]}," +
            "'extra.weight':{'dtype':'F32','shape':[1],'data_offsets':[160,164]}," +
            "'classifier.3.weight':{'dtype':'I64','shape':[1],'data_offsets':[164,172]}}", 172);
        var e = Assert.Throws<TensorFileException>(() => TensorSpecCheck.Verify(f,
        [
            ("classifier.0.weight", [4, 25]),
            ("classifier.0.bias", [4]),
            ("classifier.3.weight", [1]),
            ("classifier.3.bias", [3]),
        ]));
        Assert.Equal(
            "weights/vgg16.safetensors: does not match the expected tensors (4 problems): " +
            "'classifier.0.weight': expected [4, 25], got [4, 9]; " +
            "'classifier.3.weight': dtype I64 is not a float type (F32, F16, BF16, F64); " +
            "missing 'classifier.3.bias'; unexpected 'extra.weight'", e.Message);
    }

    [Fact]
    public void MatchingFilePasses()
    {
        using var f = File("{'a':{'dtype':'BF16','shape':[2,3],'data_offsets':[0,12]},'b':{'dtype':'F32','shape':[],'data_offsets':[12,16]}}", 16);
        TensorSpecCheck.Verify(f, [("b", []), ("a", [2, 3])]);
    }
}
