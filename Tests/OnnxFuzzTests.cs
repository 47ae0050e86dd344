using System.Runtime.InteropServices;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Google.Protobuf;
using Onnx;
using Tp7.Engine.Onnx;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Tp7.Tests;

public enum OnnxMutationKind { FlipBit, SetByte, Truncate, InsertBytes, DeleteBytes, DuplicateSlice, OverwriteVarint }

/// <summary>One edit of a serialized model. <see cref="Position"/>, <see cref="Length"/> and <see cref="Choice"/>
/// are reduced modulo what they index when applied, so any triple is valid for any file.</summary>
public sealed record OnnxMutation(OnnxMutationKind Kind, int Position, int Length, int Choice)
{
    /// <summary>Varints that reach the reader's limits once they land in a length prefix, a dim or an offset.</summary>
    private static readonly long[] Varints =
        [0, 1, -1, 127, 128, 255, 4096, int.MaxValue, (long)int.MaxValue + 1, uint.MaxValue, 1L << 40, long.MaxValue, long.MinValue];

    public byte[] ApplyTo(byte[] file)
    {
        int at = file.Length == 0 ? 0 : Position % file.Length;
        int length = 1 + Length % 16;
        switch (Kind)
        {
            case OnnxMutationKind.FlipBit:
            {
                if (file.Length == 0) return file;
                var r = (byte[])file.Clone();
                r[at] ^= (byte)(1 << (Choice % 8));
                return r;
            }
            case OnnxMutationKind.SetByte:
            {
                if (file.Length == 0) return file;
                var r = (byte[])file.Clone();
                r[at] = (byte)Choice;
                return r;
            }
            case OnnxMutationKind.Truncate:
                return file[..(Position % (file.Length + 1))];
            case OnnxMutationKind.InsertBytes:
            {
                var bytes = new byte[length];
                new Random(Choice).NextBytes(bytes);
                return [.. file[..at], .. bytes, .. file[at..]];
            }
            case OnnxMutationKind.DeleteBytes:
                return [.. file[..at], .. file[Math.Min(file.Length, at + length)..]];
            case OnnxMutationKind.DuplicateSlice:
            {
                // Copies a run of bytes elsewhere: a copied field repeats a node, an initializer or an opset import.
                int take = Math.Min(file.Length - at, 1 + Length % 64);
                int to = file.Length == 0 ? 0 : Choice * 7919 % (file.Length + 1);
                return [.. file[..to], .. file.AsSpan(at, take), .. file[to..]];
            }
            case OnnxMutationKind.OverwriteVarint:
            {
                // Replaces the varint starting at `at` (up to 10 bytes with the continuation bit) by another value.
                int end = at;
                while (end < file.Length && end - at < 10 && (file[end] & 0x80) != 0) end++;
                end = Math.Min(file.Length, end + 1);
                return [.. file[..at], .. Varint(Varints[Choice % Varints.Length]), .. file[end..]];
            }
            default:
                throw new InvalidOperationException(Kind.ToString());
        }
    }

    private static byte[] Varint(long value)
    {
        var bytes = new List<byte>();
        ulong v = (ulong)value;
        do
        {
            byte b = (byte)(v & 0x7f);
            v >>= 7;
            bytes.Add(v != 0 ? (byte)(b | 0x80) : b);
        } while (v != 0);
        return [.. bytes];
    }

    public override string ToString() => $"{Kind}(pos {Position}, len {Length}, choice {Choice})";
}

public sealed record MutatedOnnxModel(OnnxMutation[] Mutations)
{
    public byte[] Bytes => Mutations.Aggregate(OnnxFuzzBase.Bytes, (file, m) => m.ApplyTo(file));

    public override string ToString() => Mutations.Length == 0 ? "(unmutated)" : string.Join(" then ", Mutations.Select(m => m.ToString()));
}

/// <summary>The Conv+Relu+Reshape model with more to break: a DOUBLE and a FLOAT16 initializer, a Constant with a
/// tensor value, and a FLOAT initializer in an external file of a directory made once per run.</summary>
internal static class OnnxFuzzBase
{
    public static readonly string Directory = CreateDirectory();

    public static readonly byte[] Bytes = Build();

    private static string CreateDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "tp7-onnx-fuzz-" + Environment.ProcessId);
        System.IO.Directory.CreateDirectory(dir);
        float[] values = [1f, 2f, 3f, 4f, 5f, 6f];
        File.WriteAllBytes(Path.Combine(dir, "ext.bin"), [.. new byte[8], .. MemoryMarshal.AsBytes(values.AsSpan())]);
        return dir;
    }

    private static byte[] Build()
    {
        var m = OnnxModels.ConvRelu();
        var init = m.Graph.Initializer;
        init.Add(new TensorProto { Name = "d", DataType = (int)DataType.Double, Dims = { 2 }, DoubleData = { 0.5, -1 } });
        init.Add(new TensorProto
        {
            Name = "h", DataType = (int)DataType.Float16, Dims = { 2, 1 },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(new[] { (Half)1, (Half)(-2) }.AsSpan())),
        });
        var ext = new TensorProto { Name = "e", DataType = (int)DataType.Float, Dims = { 2, 3 }, DataLocation = TensorProto.Types.DataLocation.External };
        ext.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "ext.bin" });
        ext.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = "8" });
        ext.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = "24" });
        init.Add(ext);
        m.Graph.Node.Add(OnnxModels.Node("k", "Constant", [], ["k_out"], new AttributeProto
        {
            Name = "value", Type = AttributeType.Tensor,
            T = new TensorProto { DataType = (int)DataType.Int64, Dims = { 3 }, Int64Data = { 1, 2, 3 } },
        }));
        return m.ToByteArray();
    }
}

public static class OnnxFuzzArbitraries
{
    public static Arbitrary<MutatedOnnxModel> MutatedOnnxModel()
    {
        var mutation =
            from kind in Gen.Elements(Enum.GetValues<OnnxMutationKind>())
            from position in Gen.Choose(0, int.MaxValue)
            from length in Gen.Choose(0, 255)
            from choice in Gen.Choose(0, 255)
            select new OnnxMutation(kind, position, length, choice);
        var file =
            from count in Gen.Frequency((4, Gen.Constant(1)), (2, Gen.Constant(2)), (1, Gen.Constant(3)))
            from mutations in Gen.ArrayOf(mutation, count)
            select new MutatedOnnxModel(mutations);
        // Shrink by dropping one mutation at a time, so a failure reports the fewest edits that still break.
        return Arb.From(file, f => Enumerable.Range(0, f.Mutations.Length)
            .Select(i => new MutatedOnnxModel([.. f.Mutations[..i], .. f.Mutations[(i + 1)..]])));
    }
}

public class OnnxFuzzTests
{
    private const string Name = "fuzz.onnx";

    /// <summary>Parses one image; true when it parsed (and every tensor and attribute then read cleanly or with an
    /// OnnxFormatException), false when it was refused with an OnnxFormatException. Any other exception escapes and
    /// fails the property.</summary>
    private static bool ParseAndReadEverything(byte[] bytes)
    {
        OnnxModel model;
        try
        {
            model = OnnxModel.Parse(bytes, Name, OnnxFuzzBase.Directory);
        }
        catch (OnnxFormatException e)
        {
            Assert.StartsWith(Name + ": ", e.Message);
            Assert.DoesNotContain('\n', e.Message);
            return false;
        }
        Assert.InRange(model.Opset, OnnxModel.MinOpset, OnnxModel.MaxOpset);
        foreach (var t in model.Initializers.Values) ReadTensor(t);

        // Every value is written before it is read, in the order the importer gets.
        var known = new HashSet<string>(model.Initializers.Keys.Concat(model.Inputs.Select(i => i.Name)), StringComparer.Ordinal);
        foreach (var n in model.Nodes)
        {
            Assert.All(n.Input, input => Assert.True(input.Length == 0 || known.Contains(input), input));
            foreach (string output in n.Output) Assert.True(output.Length == 0 || known.Add(output), $"{output} written twice");
            foreach (var a in n.Attribute)
            {
                Expect(() => OnnxAttributes.Int(n, a.Name, 0));
                Expect(() => OnnxAttributes.Float(n, a.Name, 0));
                Expect(() => OnnxAttributes.Ints(n, a.Name));
                Expect(() => OnnxAttributes.String(n, a.Name));
                Expect(() => { if (OnnxAttributes.Tensor(n, a.Name) is { } t) ReadTensor(t); });
            }
        }
        return true;
    }

    private static void ReadTensor(OnnxTensor t)
    {
        Assert.Equal(t.Elements, t.Dims.Aggregate(1L, (a, d) => a * d));
        Assert.Equal(t.Elements, t.ToFloats().LongLength);
        if (t.DataType is (int)DataType.Int64 or (int)DataType.Int32) Assert.Equal(t.Elements, t.ToInt64s().LongLength);
        else Assert.Contains("expected an integer tensor", Assert.Throws<OnnxFormatException>(() => t.ToInt64s()).Message);
    }

    private static void Expect(Action read)
    {
        try { read(); }
        catch (OnnxFormatException e) { Assert.StartsWith(Name + ": ", e.Message); }
    }

    [Fact]
    public void UnmutatedBaseModelIsValid()
    {
        Assert.True(ParseAndReadEverything(OnnxFuzzBase.Bytes));
        var model = OnnxModel.Parse(OnnxFuzzBase.Bytes, Name, OnnxFuzzBase.Directory);
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], model.Initializers["e"].ToFloats());
        Assert.Equal([1f, -2f], model.Initializers["h"].ToFloats());
        Assert.Equal(4, model.Nodes.Count);
    }

    [Property(MaxTest = 3_000, Arbitrary = [typeof(OnnxFuzzArbitraries)])]
    public void MutatedModelEitherParsesAndReadsOrThrowsOnnxFormatException(MutatedOnnxModel file) =>
        ParseAndReadEverything(file.Bytes);

    /// <summary>Guards the fuzz against testing nothing: some mutated models must still parse (so reads are
    /// exercised) and most must be refused (so the validation paths are).</summary>
    [Fact]
    public void MutationsReachBothOutcomes()
    {
        var samples = OnnxFuzzArbitraries.MutatedOnnxModel().Generator.Sample(2000);
        int parsed = samples.Count(s => ParseAndReadEverything(s.Bytes));
        Assert.InRange(parsed, 2000 / 50, 2000 / 2); // about 11% parse with the current mutation mix
    }
}
