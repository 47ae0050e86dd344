using System.Buffers.Binary;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Tp7.Engine.IO;

namespace Tp7.Tests;

public enum MutationKind { FlipBit, SetByte, Truncate, SetLengthPrefix, ReplaceToken, InsertToken, DuplicateEntry, ReplaceNumber, ReplaceDtype, SameSizeDtype, AppendBytes }

/// <summary>One edit of a safetensors image. <see cref="Position"/> and <see cref="Choice"/> are reduced modulo
/// whatever they index when applied, so any pair is valid for any image. <see cref="FixLength"/> makes header
/// edits update the length prefix, so the edit reaches the JSON and layout checks instead of failing early.</summary>
public sealed record Mutation(MutationKind Kind, int Position, int Choice, bool FixLength)
{
    private static readonly string[] Tokens =
    [
        "", "{", "}", "[", "]", ",", ":", "\"", "[]", "{}", "-1", "1.5", "1e400", "99999999999999999999", "9223372036854775807",
        "null", "true", "\"x\"", "\"F16\"", "\"__metadata__\"", "\"dtype\":\"F32\",", "\"shape\":[],",
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},", "\"__metadata__\":{\"k\":\"v\"},",
        "\\u0000", "\\ud800", "\\\"", "\u00ff", "\ud83d\ude00", "  ", "/*c*/", "[[[[[[[[[[[[[[[[[[[[",
    ];

    private static readonly string[] Numbers =
    [
        "0", "1", "2", "3", "4", "8", "24", "-1", "-0", "1.0", "1e3", "65536", "2147483648", "4294967296",
        "9223372036854775807", "9223372036854775808", "18446744073709551616", "4611686018427387904", "00", "0x10",
    ];

    private static readonly string[] DTypeNames =
        ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "Q4", "", "f32", "F32 "];

    private static readonly string[][] SameSize =
        [["F64", "I64", "U64"], ["F32", "I32", "U32"], ["F16", "BF16", "I16", "U16"], ["U8", "I8", "BOOL", "F8_E4M3", "F8_E5M2"]];

    public byte[] ApplyTo(byte[] file)
    {
        int headerEnd = HeaderEnd(file);
        switch (Kind)
        {
            case MutationKind.FlipBit:
            {
                if (file.Length == 0) return file;
                var r = (byte[])file.Clone();
                // Three in four flips land in the header, where the parser lives; the rest in the data, which must
                // then still read (a valid header over any bytes is a valid file).
                int pos = Choice % 4 != 0 ? (headerEnd > 8 ? 8 + Position % (headerEnd - 8) : Position % file.Length)
                    : (headerEnd < file.Length ? headerEnd + Position % (file.Length - headerEnd) : Position % file.Length);
                r[pos] ^= (byte)(1 << (Choice % 8));
                return r;
            }
            case MutationKind.SetByte:
            {
                if (file.Length == 0) return file;
                var r = (byte[])file.Clone();
                r[Position % file.Length] = (byte)Choice;
                return r;
            }
            case MutationKind.Truncate:
                return file[..(Position % (file.Length + 1))];
            case MutationKind.SetLengthPrefix:
            {
                if (file.Length < 8) return file;
                ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
                ulong[] values = [0, 1, 2, n - 1, n + 1, n - 8, n + 8, (ulong)file.Length - 8, (ulong)file.Length - 7,
                    100UL << 20, (100UL << 20) + 1, 1UL << 31, (1UL << 32) + n, 1UL << 63, ulong.MaxValue];
                var r = (byte[])file.Clone();
                BinaryPrimitives.WriteUInt64LittleEndian(r, values[Choice % values.Length]);
                return r;
            }
            case MutationKind.ReplaceToken:
            {
                var spots = Find(file, headerEnd, b => "{}[],:\"".Contains((char)b) || char.IsAsciiDigit((char)b));
                if (spots.Count == 0) return file;
                int at = spots[Position % spots.Count];
                return Splice(file, headerEnd, at, 1, Tokens[Choice % Tokens.Length]);
            }
            case MutationKind.InsertToken:
                if (headerEnd <= 8) return file;
                return Splice(file, headerEnd, 8 + Position % (headerEnd - 8 + 1), 0, Tokens[Choice % Tokens.Length]);
            case MutationKind.DuplicateEntry:
            {
                // Copies one '"key":{...}' entry (or the metadata) right after the opening brace: a duplicate key.
                string header = HeaderText(file, headerEnd);
                var keys = FuzzBase.Keys.Where(k => header.Contains($"\"{k}\":{{")).ToList();
                if (keys.Count == 0 || !header.StartsWith('{')) return file;
                string key = keys[Choice % keys.Count];
                int start = header.IndexOf($"\"{key}\":{{", StringComparison.Ordinal);
                int end = header.IndexOf('}', start);
                if (end < 0) return file;
                return Splice(file, headerEnd, 9, 0, header[start..(end + 1)] + ",");
            }
            case MutationKind.ReplaceNumber:
            {
                var runs = Runs(file, headerEnd, b => char.IsAsciiDigit((char)b));
                if (runs.Count == 0) return file;
                var (at, len) = runs[Position % runs.Count];
                return Splice(file, headerEnd, at, len, Numbers[Choice % Numbers.Length]);
            }
            case MutationKind.ReplaceDtype:
            case MutationKind.SameSizeDtype:
            {
                string header = HeaderText(file, headerEnd);
                var spots = new List<(int At, int Len)>();
                for (int i = header.IndexOf("\"dtype\":\"", StringComparison.Ordinal); i >= 0;
                     i = header.IndexOf("\"dtype\":\"", i + 1, StringComparison.Ordinal))
                {
                    int valueStart = i + 9, valueEnd = header.IndexOf('"', valueStart);
                    if (valueEnd > 0) spots.Add((8 + valueStart, valueEnd - valueStart));
                }
                if (spots.Count == 0) return file;
                var (at, len) = spots[Position % spots.Count];
                string replacement = DTypeNames[Choice % DTypeNames.Length];
                if (Kind == MutationKind.SameSizeDtype)
                {
                    // Keeps the file valid while changing how its bytes are read (F16 as U16, I64 as F64, ...).
                    string old = Encoding.Latin1.GetString(file, at, len);
                    var peers = SameSize.FirstOrDefault(g => g.Contains(old));
                    if (peers is null) return file;
                    replacement = peers[Choice % peers.Length];
                }
                return Splice(file, headerEnd, at, len, replacement);
            }
            case MutationKind.AppendBytes:
                return [.. file, .. new byte[Choice % 17]];
            default:
                throw new InvalidOperationException(Kind.ToString());
        }
    }

    /// <summary>End of the header as the prefix claims it, clamped to the file.</summary>
    private static int HeaderEnd(byte[] file)
    {
        if (file.Length < 8) return file.Length;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        return n > (ulong)(file.Length - 8) ? file.Length : 8 + (int)n;
    }

    /// <summary>The header bytes one char per byte, so string indices are byte offsets minus 8.</summary>
    private static string HeaderText(byte[] file, int headerEnd) =>
        file.Length < 8 ? "" : Encoding.Latin1.GetString(file, 8, headerEnd - 8);

    private static List<int> Find(byte[] file, int headerEnd, Func<byte, bool> match)
    {
        var spots = new List<int>();
        for (int i = 8; i < headerEnd; i++) if (match(file[i])) spots.Add(i);
        return spots;
    }

    private static List<(int At, int Len)> Runs(byte[] file, int headerEnd, Func<byte, bool> match)
    {
        var runs = new List<(int, int)>();
        for (int i = 8; i < headerEnd;)
        {
            if (!match(file[i])) { i++; continue; }
            int start = i;
            while (i < headerEnd && match(file[i])) i++;
            runs.Add((start, i - start));
        }
        return runs;
    }

    private byte[] Splice(byte[] file, int headerEnd, int at, int removed, string inserted)
    {
        byte[] text = Encoding.UTF8.GetBytes(inserted);
        byte[] r = [.. file[..at], .. text, .. file[(at + removed)..]];
        if (FixLength && file.Length >= 8 && at < headerEnd)
            BinaryPrimitives.WriteUInt64LittleEndian(r, (ulong)(headerEnd - 8 - removed + text.Length));
        return r;
    }

    public override string ToString() => $"{Kind}(pos {Position}, choice {Choice}{(FixLength ? ", fix length" : "")})";
}

/// <summary>A valid file with metadata and five tensors of different dtypes, and the mutations applied to it.</summary>
public sealed record MutatedFile(Mutation[] Mutations)
{
    public byte[] Bytes => Mutations.Aggregate(FuzzBase.Bytes, (file, m) => m.ApplyTo(file));

    public override string ToString() => Mutations.Length == 0 ? "(unmutated)" : string.Join(" then ", Mutations.Select(m => m.ToString()));
}

internal static class FuzzBase
{
    public static readonly string[] Keys = ["__metadata__", "w", "h", "b", "y", "u"];

    public static readonly byte[] Bytes = Build();

    private static byte[] Build()
    {
        string header = SafeTensorsBytes.Json(
            "{'__metadata__':{'format':'pt','epoch':'3'}," +
            "'w':{'dtype':'F32','shape':[2,3],'data_offsets':[0,24]}," +
            "'h':{'dtype':'F16','shape':[4],'data_offsets':[24,32]}," +
            "'b':{'dtype':'BF16','shape':[2,2],'data_offsets':[32,40]}," +
            "'y':{'dtype':'I64','shape':[2],'data_offsets':[40,56]}," +
            "'u':{'dtype':'U8','shape':[3],'data_offsets':[56,59]}}   ");
        var data = new byte[59];
        new Random(3).NextBytes(data);
        return SafeTensorsBytes.Build(header, data);
    }
}

public static class FuzzArbitraries
{
    public static Arbitrary<MutatedFile> MutatedFile()
    {
        var mutation =
            from kind in Gen.Elements(Enum.GetValues<MutationKind>())
            from position in Gen.Choose(0, int.MaxValue)
            from choice in Gen.Choose(0, 255)
            from fix in Gen.Elements(true, false)
            select new Mutation(kind, position, choice, fix);
        var file =
            from count in Gen.Frequency((4, Gen.Constant(1)), (2, Gen.Constant(2)), (1, Gen.Constant(3)), (1, Gen.Constant(4)))
            from mutations in Gen.ArrayOf(mutation, count)
            select new MutatedFile(mutations);
        // Shrink by dropping one mutation at a time, so a failure reports the fewest edits that still break.
        return Arb.From(file, f => Enumerable.Range(0, f.Mutations.Length)
            .Select(i => new MutatedFile([.. f.Mutations[..i], .. f.Mutations[(i + 1)..]])));
    }
}

public class SafeTensorsFuzzTests
{
    private const string Name = "fuzz.safetensors";

    /// <summary>Opens one image; returns true when it parsed (and every tensor then read in bounds), false when it
    /// was rejected with a TensorFileException. Any other exception escapes and fails the property.</summary>
    private static bool OpenAndReadEverything(byte[] bytes)
    {
        SafeTensorsFile file;
        try
        {
            file = SafeTensorsFile.Open(bytes, Name);
        }
        catch (TensorFileException e)
        {
            Assert.StartsWith(Name + ": ", e.Message);
            Assert.DoesNotContain('\n', e.Message);
            return false;
        }
        using (file)
        {
            long covered = 0;
            foreach (var t in file.Tensors)
            {
                Assert.InRange(t.Begin, 0, t.End);
                Assert.InRange(t.End, t.Begin, file.DataLength);
                Assert.Equal(t.ByteLength, t.ElementCount * DTypes.SizeOf(t.DType));
                covered += t.ByteLength;
                if (t.DType is "F32" or "F16" or "BF16" or "F64")
                {
                    Assert.Equal(t.ElementCount, file.ReadFloat32(t.Key).LongLength);
                }
                else if (t.DType is "I64" or "I32" or "I16" or "I8" or "U32" or "U16" or "U8" or "U64")
                {
                    try { Assert.Equal(t.ElementCount, file.ReadInt64(t.Key).LongLength); }
                    catch (TensorFileException e) when (t.DType == "U64") { Assert.Contains("does not fit", e.Message); }
                }
                else
                {
                    var e = Assert.Throws<TensorFileException>(() => file.ReadFloat32(t.Key));
                    Assert.Contains("cannot be read as float32", e.Message);
                }
            }
            Assert.Equal(file.DataLength, covered);
        }
        return true;
    }

    [Fact]
    public void UnmutatedBaseFileIsValid()
    {
        Assert.True(OpenAndReadEverything(FuzzBase.Bytes));
        using var f = SafeTensorsFile.Open(FuzzBase.Bytes, Name);
        Assert.Equal(["w", "h", "b", "y", "u"], f.Tensors.Select(t => t.Key));
        Assert.Equal("3", f.Metadata["epoch"]);
    }

    [Property(MaxTest = 10_000, Arbitrary = [typeof(FuzzArbitraries)])]
    public void MutatedFileEitherReadsInBoundsOrThrowsTensorFileException(MutatedFile file) =>
        OpenAndReadEverything(file.Bytes);

    /// <summary>Guards the fuzz against testing nothing: a fair share of mutated files must still parse (so reads
    /// are exercised) and most must be rejected (so the validation paths are).</summary>
    [Fact]
    public void MutationsReachBothOutcomes()
    {
        var samples = FuzzArbitraries.MutatedFile().Generator.Sample(3000);
        int parsed = samples.Count(s => OpenAndReadEverything(s.Bytes));
        Assert.InRange(parsed, 3000 / 40, 3000 / 2); // about 8% parse with the current mutation mix
    }
}
