using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;
using Tp7.Engine.Onnx;
using AttributeType = Onnx.AttributeProto.Types.AttributeType;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Tp7.Tests;

/// <summary>Small ONNX models built with the generated protobuf classes, to be edited into hostile ones by a test.</summary>
internal static class OnnxModels
{
    public const string Name = "tiny.onnx";

    /// <summary>Conv weight (3, 2, 3, 3), OIHW, stored as raw_data.</summary>
    public static readonly float[] W = Enumerable.Range(0, 3 * 2 * 3 * 3).Select(i => (i % 7 - 3) * 0.125f + i * 1e-3f).ToArray();

    /// <summary>Conv bias (3), stored as float_data; non-zero so a dropped bias shows.</summary>
    public static readonly float[] B = [0.5f, -1.25f, 3.0f];

    /// <summary>Reshape target, stored as int64_data.</summary>
    public static readonly long[] Shape = [1, -1];

    /// <summary>x (N, 2, 5, 5) → conv1 (Conv, pad 1) → relu1 (Relu) → reshape1 (Reshape to [1, -1]) → y, opset 13.</summary>
    public static ModelProto ConvRelu(long opset = 13)
    {
        var graph = new GraphProto { Name = "tiny" };
        graph.Input.Add(Value("x", DataType.Float, null, 2, 5, 5));
        graph.Output.Add(Value("y", DataType.Float, 1, 75));
        graph.Initializer.Add(new TensorProto
        {
            Name = "W", DataType = (int)DataType.Float, Dims = { 3, 2, 3, 3 },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(W.AsSpan())),
        });
        graph.Initializer.Add(new TensorProto { Name = "B", DataType = (int)DataType.Float, Dims = { 3 }, FloatData = { B } });
        graph.Initializer.Add(new TensorProto { Name = "shape", DataType = (int)DataType.Int64, Dims = { 2 }, Int64Data = { Shape } });
        graph.Node.Add(Node("conv1", "Conv", ["x", "W", "B"], ["c"],
            Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Int("group", 1)));
        graph.Node.Add(Node("relu1", "Relu", ["c"], ["r"]));
        graph.Node.Add(Node("reshape1", "Reshape", ["r", "shape"], ["y"]));
        return new ModelProto
        {
            IrVersion = 7, ProducerName = "tp7-tests", Graph = graph,
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = opset } },
        };
    }

    public static ValueInfoProto Value(string name, DataType type, params long?[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long? d in dims)
            shape.Dim.Add(d is { } v ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = "N" });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }

    public static NodeProto Node(string name, string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { Name = name, OpType = op };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }

    public static AttributeProto Ints(string name, params long[] values) => new() { Name = name, Type = AttributeType.Ints, Ints = { values } };
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeType.Int, I = value };
    public static AttributeProto Floats(string name, params float[] values) => new() { Name = name, Type = AttributeType.Floats, Floats = { values } };
    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeType.Float, F = value };

    public static OnnxModel Parse(ModelProto m, string? directory = null) => OnnxModel.Parse(m.ToByteArray(), Name, directory);

    /// <summary>Parses <paramref name="m"/> expecting a refusal; returns the one-line message.</summary>
    public static string Refused(ModelProto m, string? directory = null) => Refused(m.ToByteArray(), directory);

    public static string Refused(byte[] bytes, string? directory = null)
    {
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModel.Parse(bytes, Name, directory));
        Assert.StartsWith(Name + ": ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    public static TensorProto Initializer(ModelProto m, string name) => m.Graph.Initializer.Single(t => t.Name == name);
}

public class OnnxFileTests
{
    // ---------------------------------------------------------------- valid models

    [Fact]
    public void ValidModelParsesWithDimsValuesAndOrder()
    {
        var model = OnnxModels.Parse(OnnxModels.ConvRelu());

        Assert.Equal(OnnxModels.Name, model.Path);
        Assert.Equal((7L, 13, "tp7-tests"), (model.IrVersion, model.Opset, model.ProducerName));
        Assert.Equal(["conv1", "relu1", "reshape1"], model.Nodes.Select(n => n.Name));
        var x = Assert.Single(model.Inputs);
        Assert.Equal("x", x.Name);
        Assert.Equal((int)DataType.Float, x.ElemType);
        Assert.Equal([null, 2L, 5L, 5L], x.Dims);
        var y = Assert.Single(model.Outputs);
        Assert.Equal(("y", (int)DataType.Float), (y.Name, y.ElemType));
        Assert.Equal([1L, 75L], y.Dims);

        Assert.Equal(["B", "W", "shape"], model.Initializers.Keys.Order());
        var w = model.Initializers["W"];
        Assert.Equal([3L, 2, 3, 3], w.Dims);
        Assert.Equal(54, w.Elements);
        Assert.Equal(OnnxModels.W, w.ToFloats());        // raw_data
        Assert.Equal(OnnxModels.B, model.Initializers["B"].ToFloats()); // float_data
        Assert.Equal(OnnxModels.Shape, model.Initializers["shape"].ToInt64s()); // int64_data
        Assert.Equal([1f, -1f], model.Initializers["shape"].ToFloats());
    }

    [Fact]
    public void LoadReadsTheFileAndNamesItsPath()
    {
        string dir = TempDir();
        string path = Path.Combine(dir, "m.onnx");
        File.WriteAllBytes(path, OnnxModels.ConvRelu().ToByteArray());
        var model = OnnxModel.Load(path);
        Assert.Equal(path, model.Path);
        Assert.Equal(OnnxModels.W, model.Initializers["W"].ToFloats());

        var e = Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(Path.Combine(dir, "missing.onnx")));
        Assert.StartsWith(Path.Combine(dir, "missing.onnx") + ": cannot read", e.Message);
    }

    [Fact]
    public void FloatTensorsOfEveryStorageTypeWidenToFloat32()
    {
        double[] doubles = [1.5, -2.25, 1e-3];
        Half[] halves = [(Half)0.5f, (Half)(-3f), Half.Epsilon];
        float[] bfloatValues = [1f, -2.5f, 65536f];
        int[] ints = [-7, 0, 1 << 20];
        long[] longs = [3, -4, 1L << 40];
        var m = OnnxModels.ConvRelu();
        var init = m.Graph.Initializer;
        init.Add(new TensorProto { Name = "d_typed", DataType = (int)DataType.Double, Dims = { 3 }, DoubleData = { doubles } });
        init.Add(new TensorProto { Name = "d_raw", DataType = (int)DataType.Double, Dims = { 3 }, RawData = Raw<double>(doubles) });
        init.Add(new TensorProto { Name = "h_raw", DataType = (int)DataType.Float16, Dims = { 3 }, RawData = Raw<Half>(halves) });
        init.Add(new TensorProto
        {
            Name = "h_typed", DataType = (int)DataType.Float16, Dims = { 3 },
            Int32Data = { halves.Select(h => (int)BitConverter.HalfToUInt16Bits(h)) },
        });
        init.Add(new TensorProto
        {
            Name = "bf_typed", DataType = (int)DataType.Bfloat16, Dims = { 3 },
            Int32Data = { bfloatValues.Select(f => (int)(BitConverter.SingleToUInt32Bits(f) >> 16)) },
        });
        init.Add(new TensorProto { Name = "i32_raw", DataType = (int)DataType.Int32, Dims = { 3 }, RawData = Raw<int>(ints) });
        init.Add(new TensorProto { Name = "i32_typed", DataType = (int)DataType.Int32, Dims = { 3 }, Int32Data = { ints } });
        init.Add(new TensorProto { Name = "i64_raw", DataType = (int)DataType.Int64, Dims = { 3 }, RawData = Raw<long>(longs) });
        init.Add(new TensorProto { Name = "scalar", DataType = (int)DataType.Float, FloatData = { 42f } });
        init.Add(new TensorProto { Name = "empty", DataType = (int)DataType.Float, Dims = { 0, 4 } });
        var t = OnnxModels.Parse(m).Initializers;

        float[] fromDoubles = doubles.Select(v => (float)v).ToArray();
        Assert.Equal(fromDoubles, t["d_typed"].ToFloats());
        Assert.Equal(fromDoubles, t["d_raw"].ToFloats());
        Assert.Equal([0.5f, -3f, (float)Half.Epsilon], t["h_raw"].ToFloats());
        Assert.Equal(t["h_raw"].ToFloats(), t["h_typed"].ToFloats());
        Assert.Equal(bfloatValues, t["bf_typed"].ToFloats());
        Assert.Equal([-7f, 0f, 1 << 20], t["i32_raw"].ToFloats());
        Assert.Equal([-7L, 0, 1 << 20], t["i32_raw"].ToInt64s());
        Assert.Equal([-7L, 0, 1 << 20], t["i32_typed"].ToInt64s());
        Assert.Equal(longs, t["i64_raw"].ToInt64s());
        Assert.Equal([3f, -4f, 1L << 40], t["i64_raw"].ToFloats());
        Assert.Empty(t["scalar"].Dims);
        Assert.Equal(1L, t["scalar"].Elements);
        Assert.Equal([42f], t["scalar"].ToFloats());
        Assert.Equal((0L, 0), (t["empty"].Elements, t["empty"].ToFloats().Length));

        var e = Assert.Throws<OnnxFormatException>(() => t["d_raw"].ToInt64s());
        Assert.Equal($"{OnnxModels.Name}: tensor 'd_raw': is DOUBLE, expected an integer tensor (INT64 or INT32) here", e.Message);
    }

    [Fact]
    public void NodesOutOfOrderAreSortedTopologically()
    {
        var m = OnnxModels.ConvRelu();
        var reversed = m.Graph.Node.Reverse().ToList();
        m.Graph.Node.Clear();
        m.Graph.Node.AddRange(reversed);
        var model = OnnxModels.Parse(m);
        Assert.Equal(["conv1", "relu1", "reshape1"], model.Nodes.Select(n => n.Name));
    }

    [Fact]
    public void OtherDomainsAreKeptForTheImporterToReport()
    {
        var m = OnnxModels.ConvRelu();
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        m.Graph.Node[1].Domain = "com.microsoft";
        m.Graph.Node[1].OpType = "FusedRelu";
        var model = OnnxModels.Parse(m);
        Assert.Equal(13, model.Opset);
        Assert.Equal(("com.microsoft", "FusedRelu"), (model.Nodes[1].Domain, model.Nodes[1].OpType));

        m.OpsetImport[0].Domain = "ai.onnx"; // the default domain's other spelling
        Assert.Equal(13, OnnxModels.Parse(m).Opset);
    }

    // ---------------------------------------------------------------- attributes

    [Fact]
    public void AttributesReadByKindWithFallbacks()
    {
        var model = OnnxModels.Parse(OnnxModels.ConvRelu());
        var conv = model.Nodes[0];
        Assert.Equal(1, OnnxAttributes.Int(conv, "group", 7));
        Assert.Equal(7, OnnxAttributes.Int(conv, "missing", 7));
        Assert.Equal([3L, 3], OnnxAttributes.Ints(conv, "kernel_shape")!);
        Assert.Null(OnnxAttributes.Ints(conv, "strides"));
        Assert.Equal(0.25f, OnnxAttributes.Float(conv, "alpha", 0.25f));
        Assert.Null(OnnxAttributes.String(conv, "auto_pad"));
        Assert.Null(OnnxAttributes.Tensor(conv, "value"));

        var e = Assert.Throws<OnnxFormatException>(() => OnnxAttributes.Float(conv, "group", 0f));
        Assert.Equal($"{OnnxModels.Name}: node 'conv1' (Conv): attribute 'group': is INT, expected FLOAT", e.Message);
        e = Assert.Throws<OnnxFormatException>(() => OnnxAttributes.Ints(conv, "group"));
        Assert.Contains("attribute 'group': is INT, expected INTS", e.Message);
    }

    [Fact]
    public void AttributesWithoutTypeAreReadByTheirField()
    {
        // IR version 1 files did not write AttributeProto.type.
        var m = OnnxModels.ConvRelu();
        m.Graph.Node[0].Attribute.Add(new AttributeProto { Name = "auto_pad", S = ByteString.CopyFromUtf8("SAME_UPPER") });
        m.Graph.Node[0].Attribute.Add(new AttributeProto { Name = "strides", Ints = { 2, 2 } });
        m.Graph.Node[1].Attribute.Add(new AttributeProto { Name = "alpha", F = 0.1f });
        var model = OnnxModels.Parse(m);
        Assert.Equal("SAME_UPPER", OnnxAttributes.String(model.Nodes[0], "auto_pad"));
        Assert.Equal([2L, 2], OnnxAttributes.Ints(model.Nodes[0], "strides")!);
        Assert.Equal(0.1f, OnnxAttributes.Float(model.Nodes[1], "alpha", 0f));
    }

    [Fact]
    public void ConstantValuesOfEveryAttributeKindBecomeTensors()
    {
        var m = OnnxModels.ConvRelu();
        var constants = new (string Output, AttributeProto Value)[]
        {
            ("k_tensor", new AttributeProto
            {
                Name = "value", Type = AttributeType.Tensor,
                T = new TensorProto { DataType = (int)DataType.Int64, Dims = { 2 }, RawData = Raw<long>([4, 5]) },
            }),
            ("k_floats", OnnxModels.Floats("value_floats", 1.5f, 2.5f, 3.5f)),
            ("k_float", OnnxModels.Float("value_float", -0.75f)),
            ("k_ints", OnnxModels.Ints("value_ints", 9, 8)),
            ("k_int", OnnxModels.Int("value_int", 6)),
        };
        foreach (var (output, value) in constants)
            m.Graph.Node.Add(OnnxModels.Node($"const_{output}", "Constant", [], [output], value));
        var nodes = OnnxModels.Parse(m).Nodes.Where(n => n.OpType == "Constant").ToDictionary(n => n.Output[0]);

        var t = OnnxAttributes.Tensor(nodes["k_tensor"], "value")!;
        Assert.Equal(("k_tensor", (int)DataType.Int64), (t.Name, t.DataType));
        Assert.Equal([2L], t.Dims);
        Assert.Equal([4L, 5], t.ToInt64s());
        t = OnnxAttributes.Tensor(nodes["k_floats"], "value")!;
        Assert.Equal(("k_floats", (int)DataType.Float), (t.Name, t.DataType));
        Assert.Equal([3L], t.Dims);
        Assert.Equal([1.5f, 2.5f, 3.5f], t.ToFloats());
        t = OnnxAttributes.Tensor(nodes["k_float"], "value")!;
        Assert.Empty(t.Dims);
        Assert.Equal([-0.75f], t.ToFloats());
        t = OnnxAttributes.Tensor(nodes["k_ints"], "value")!;
        Assert.Equal((int)DataType.Int64, t.DataType);
        Assert.Equal([2L], t.Dims);
        Assert.Equal([9L, 8], t.ToInt64s());
        t = OnnxAttributes.Tensor(nodes["k_int"], "value")!;
        Assert.Empty(t.Dims);
        Assert.Equal([6L], t.ToInt64s());
    }

    [Fact]
    public void ConstantTensorsAreValidatedAtLoadAndUnsupportedTypesWhenRead()
    {
        var m = OnnxModels.ConvRelu();
        m.Graph.Node.Add(OnnxModels.Node("k", "Constant", [], ["k_out"], new AttributeProto
        {
            Name = "value", Type = AttributeType.Tensor,
            T = new TensorProto { DataType = (int)DataType.Float, Dims = { 4 }, FloatData = { 1f, 2f } },
        }));
        Assert.Equal($"{OnnxModels.Name}: node 'k' (Constant): attribute 'value': dims [4] of FLOAT need 4 elements, float_data holds 2",
            OnnxModels.Refused(m));

        // A BOOL constant is not malformed; the importer meets the refusal when it asks for the value.
        m.Graph.Node[^1].Attribute[0].T = new TensorProto { DataType = (int)DataType.Bool, Dims = { 2 }, Int32Data = { 1, 0 } };
        var node = OnnxModels.Parse(m).Nodes.Single(n => n.Name == "k");
        var e = Assert.Throws<OnnxFormatException>(() => OnnxAttributes.Tensor(node, "value"));
        Assert.StartsWith($"{OnnxModels.Name}: node 'k' (Constant): attribute 'value': data type BOOL is not supported", e.Message);
    }

    [Fact]
    public void TensorAttributeWithoutATensorIsRefusedWhenRead()
    {
        // Found by the fuzz test: type TENSOR with the t field missing.
        var m = OnnxModels.ConvRelu();
        m.Graph.Node.Add(OnnxModels.Node("k", "Constant", [], ["k_out"], new AttributeProto { Name = "value", Type = AttributeType.Tensor }));
        var node = OnnxModels.Parse(m).Nodes.Single(n => n.Name == "k");
        var e = Assert.Throws<OnnxFormatException>(() => OnnxAttributes.Tensor(node, "value"));
        Assert.Equal($"{OnnxModels.Name}: node 'k' (Constant): attribute 'value': is TENSOR but holds no tensor", e.Message);
    }

    // ---------------------------------------------------------------- hostile files

    [Fact]
    public void EveryTruncationIsRefusedWithOneLine()
    {
        byte[] bytes = OnnxModels.ConvRelu().ToByteArray();
        Assert.Contains("file is empty", OnnxModels.Refused([]));
        var messages = new HashSet<string>();
        for (int length = 1; length < bytes.Length; length++)
            messages.Add(OnnxModels.Refused(bytes[..length]));
        // Cuts inside a field are protobuf errors; cuts between fields drop the graph or the opset import (written last).
        Assert.Contains(messages, s => s.Contains("not an ONNX model, or truncated"));
        Assert.Contains(messages, s => s.Contains("has no graph"));
        Assert.Contains(messages, s => s.Contains("imports no version of the default domain"));
    }

    [Fact]
    public void GarbageAndOtherMessagesAreNotModels()
    {
        Assert.Contains("not an ONNX model", OnnxModels.Refused("hello, world\n"u8.ToArray()));
        var random = new byte[4096];
        new Random(7).NextBytes(random);
        Assert.Contains("not an ONNX model", OnnxModels.Refused(random));
        // A NodeProto's bytes read as a ModelProto (its strings land in ModelProto's string fields), but without a graph.
        byte[] node = OnnxModels.ConvRelu().Graph.Node[1].ToByteArray();
        Assert.Equal($"{OnnxModels.Name}: has no graph; not an ONNX model (or not a ModelProto)", OnnxModels.Refused(node));
    }

    [Theory]
    [InlineData(6)]
    [InlineData(22)]
    public void OpsetsOutsideSevenToTwentyOneAreRefused(long opset)
    {
        Assert.Equal($"{OnnxModels.Name}: opset_import: default-domain opset {opset} is not supported (this reader takes 7..21)",
            OnnxModels.Refused(OnnxModels.ConvRelu(opset)));
        Assert.Equal(7, OnnxModels.Parse(OnnxModels.ConvRelu(7)).Opset);
        Assert.Equal(21, OnnxModels.Parse(OnnxModels.ConvRelu(21)).Opset);
    }

    [Fact]
    public void MissingOrConflictingOpsetIsRefused()
    {
        var m = OnnxModels.ConvRelu();
        m.OpsetImport[0].Domain = "com.example";
        Assert.Contains("opset_import: imports no version of the default domain", OnnxModels.Refused(m));
        m = OnnxModels.ConvRelu();
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "ai.onnx", Version = 11 });
        Assert.Contains("imports the default domain twice, as 13 and 11", OnnxModels.Refused(m));
    }

    [Fact]
    public void NegativeDimIsRefusedNamingTheTensor()
    {
        var m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "W").Dims[1] = -2;
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': dims [3, -2, 3, 3]: dim 1 is negative", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        m.Graph.Input[0].Type.TensorType.Shape.Dim[2].DimValue = -5;
        Assert.Equal($"{OnnxModels.Name}: input 'x': dim 2 is -5, negative", OnnxModels.Refused(m));
    }

    [Fact]
    public void HugeDimsFailFastWithoutAllocating()
    {
        var m = OnnxModels.ConvRelu();
        var w = OnnxModels.Initializer(m, "W");
        w.Dims.Clear();
        w.Dims.Add(1L << 40);
        byte[] bytes = m.ToByteArray();
        long before = GC.GetAllocatedBytesForCurrentThread();
        string message = OnnxModels.Refused(bytes);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': dims [1099511627776]: dim 0 is over the {OnnxTensor.MaxElements}-element limit of one tensor", message);
        Assert.True(allocated < 1 << 20, $"refusing the model allocated {allocated} bytes");

        // Each dim below the cap, their product far above it (and above 2^64).
        w.Dims.Clear();
        w.Dims.AddRange([1L << 30, 1L << 30, 1L << 30]);
        Assert.Contains("tensor 'W': dims [1073741824, 1073741824, 1073741824] hold more than the", OnnxModels.Refused(m));
        // Under the cap, but the data is not there: the length check refuses it, nothing is allocated for the dims.
        w.Dims.Clear();
        w.Dims.AddRange([1L << 15, 1L << 15]);
        Assert.Contains("tensor 'W': dims [32768, 32768] of FLOAT need 4294967296 bytes, raw_data holds 216", OnnxModels.Refused(m));
        // An empty tensor may have any other dims.
        w.Dims.Clear();
        w.Dims.AddRange([1L << 30, 0, 1L << 30]);
        w.RawData = ByteString.Empty;
        Assert.Equal(0, OnnxModels.Parse(m).Initializers["W"].Elements);
    }

    /// <summary>graph → initializer → raw_data or float_data, each length prefix claiming about 2 GiB, then 100 bytes.</summary>
    private static byte[] HugeLengthPrefixes(int tensorField)
    {
        const int inner = 0x7FFF_0000;
        var stream = new MemoryStream();
        var o = new CodedOutputStream(stream);
        o.WriteTag(7, WireFormat.WireType.LengthDelimited);       // ModelProto.graph
        o.WriteLength(inner + 12);
        o.WriteTag(5, WireFormat.WireType.LengthDelimited);       // GraphProto.initializer
        o.WriteLength(inner + 6);
        o.WriteTag(tensorField, WireFormat.WireType.LengthDelimited);
        o.WriteLength(inner);
        o.Flush();
        return [.. stream.ToArray(), .. new byte[100]];
    }

    [Theory]
    [InlineData(9)] // raw_data
    [InlineData(4)] // float_data, packed
    public void HugeLengthPrefixesFailWithoutAllocating(int tensorField)
    {
        byte[] bytes = HugeLengthPrefixes(tensorField);
        string path = Path.Combine(TempDir(), "huge.onnx");
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Contains("not an ONNX model, or truncated", OnnxModels.Refused(bytes));
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModel.Load(path));
        Assert.StartsWith($"{path}: not an ONNX model, or truncated", e.Message);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 4 << 20, $"refusing the model allocated {allocated} bytes");
    }

    [Fact]
    public void TooManyDimsAreRefused()
    {
        var m = OnnxModels.ConvRelu();
        var b = OnnxModels.Initializer(m, "B");
        b.Dims.AddRange(Enumerable.Repeat(1L, 40));
        Assert.Equal($"{OnnxModels.Name}: tensor 'B': has 41 dims, more than the 32 this reader accepts", OnnxModels.Refused(m));
    }

    [Fact]
    public void DataLengthMustMatchDims()
    {
        var m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "W").RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(OnnxModels.W.AsSpan(1)));
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': dims [3, 2, 3, 3] of FLOAT need 216 bytes, raw_data holds 212", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "B").FloatData.Add(9f);
        Assert.Equal($"{OnnxModels.Name}: tensor 'B': dims [3] of FLOAT need 3 elements, float_data holds 4", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "shape").Int64Data.RemoveAt(1);
        Assert.Equal($"{OnnxModels.Name}: tensor 'shape': dims [2] of INT64 need 2 elements, int64_data holds 1", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        var s = OnnxModels.Initializer(m, "shape");
        s.Int64Data.Clear();
        s.FloatData.Add([1f, -1f]);
        Assert.Equal($"{OnnxModels.Name}: tensor 'shape': is INT64 but its data is in float_data (expected raw_data or int64_data)", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "B").RawData = Raw<float>([1f, 2f, 3f]);
        Assert.Equal($"{OnnxModels.Name}: tensor 'B': holds data in both raw_data and float_data; exactly one is allowed", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "B").FloatData.Clear();
        Assert.Equal($"{OnnxModels.Name}: tensor 'B': dims [3] of FLOAT need 3 elements but the tensor holds no data", OnnxModels.Refused(m));
    }

    [Theory]
    [InlineData((int)DataType.String, "STRING")]
    [InlineData((int)DataType.Bool, "BOOL")]
    [InlineData((int)DataType.Complex64, "COMPLEX64")]
    [InlineData((int)DataType.Uint8, "UINT8")]
    [InlineData(99, "unknown (99)")]
    public void UnsupportedWeightTypesAreRefusedNamingTheTensor(int type, string name)
    {
        var m = OnnxModels.ConvRelu();
        OnnxModels.Initializer(m, "B").DataType = type;
        Assert.Equal($"{OnnxModels.Name}: tensor 'B': data type {name} is not supported (supported: FLOAT, DOUBLE, FLOAT16, BFLOAT16, INT32, INT64)",
            OnnxModels.Refused(m));
    }

    [Fact]
    public void CycleIsRefusedNamingANodeOnIt()
    {
        // x → conv1 → c; relu1 reads c and q; a → p → b → q → relu1 → r → a: a cycle of three, conv1 outside it.
        var m = OnnxModels.ConvRelu();
        var g = m.Graph;
        g.Node[1].Input.Add("q");
        g.Node.Add(OnnxModels.Node("a", "Relu", ["r"], ["p"]));
        g.Node.Add(OnnxModels.Node("b", "Relu", ["p"], ["q"]));
        string message = OnnxModels.Refused(m);
        Assert.StartsWith($"{OnnxModels.Name}: node ", message);
        Assert.Contains("is on a cycle: ", message);
        foreach (string node in new[] { "'a' (Relu)", "'b' (Relu)", "'relu1' (Relu)" }) Assert.Contains(node, message);
        Assert.DoesNotContain("conv1", message);
        Assert.DoesNotContain("reshape1", message); // after the cycle, not on it

        // A node that reads its own output.
        m = OnnxModels.ConvRelu();
        m.Graph.Node[1].Input.Add("r");
        Assert.Equal($"{OnnxModels.Name}: node 'relu1' (Relu): is on a cycle: node 'relu1' (Relu) → node 'relu1' (Relu)", OnnxModels.Refused(m));
    }

    [Fact]
    public void MissingInitializerNamesTheNodeAndTheValue()
    {
        var m = OnnxModels.ConvRelu();
        m.Graph.Initializer.Remove(OnnxModels.Initializer(m, "B"));
        Assert.Equal($"{OnnxModels.Name}: node 'conv1' (Conv): input 'B' is not produced by any node, initializer or graph input (missing initializer?)",
            OnnxModels.Refused(m));

        // A node without a name is named by its index and op.
        m.Graph.Node[0].Name = "";
        Assert.StartsWith($"{OnnxModels.Name}: node #0 (Conv): input 'B'", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        m.Graph.Output[0].Name = "nowhere";
        Assert.Equal($"{OnnxModels.Name}: output 'nowhere': is not produced by any node, initializer or graph input", OnnxModels.Refused(m));
    }

    [Fact]
    public void OptionalInputsLeftEmptyAreAllowed()
    {
        var m = OnnxModels.ConvRelu();
        m.Graph.Node[0].Input[2] = ""; // Conv without bias, written as an empty name
        Assert.Equal(["x", "W", ""], OnnxModels.Parse(m).Nodes[0].Input);
    }

    [Fact]
    public void ValueWrittenTwiceIsRefused()
    {
        var m = OnnxModels.ConvRelu();
        m.Graph.Node[1].Output[0] = "c";
        Assert.Equal($"{OnnxModels.Name}: node 'relu1' (Relu): writes 'c', which node 'conv1' (Conv) writes too", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        m.Graph.Node[1].Output[0] = "W";
        Assert.Equal($"{OnnxModels.Name}: node 'relu1' (Relu): writes 'W', which is an initializer", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        m.Graph.Node[1].Output[0] = "x";
        Assert.Equal($"{OnnxModels.Name}: node 'relu1' (Relu): writes 'x', which is a graph input", OnnxModels.Refused(m));

        m = OnnxModels.ConvRelu();
        m.Graph.Initializer.Add(OnnxModels.Initializer(m, "B").Clone());
        Assert.Equal($"{OnnxModels.Name}: tensor 'B': is an initializer twice", OnnxModels.Refused(m));
    }

    [Fact]
    public void NonFloatGraphInputIsAWrongDtype()
    {
        var m = OnnxModels.ConvRelu();
        m.Graph.Input[0].Type.TensorType.ElemType = (int)DataType.Int64;
        Assert.Equal($"{OnnxModels.Name}: input 'x': wrong dtype INT64: graph inputs must be FLOAT", OnnxModels.Refused(m));

        // Inputs that are initializers too (IR < 4 exporters list every weight) are weights, not inputs.
        m = OnnxModels.ConvRelu();
        m.Graph.Input.Add(OnnxModels.Value("shape", DataType.Int64, 2));
        Assert.Equal(["x"], OnnxModels.Parse(m).Inputs.Select(i => i.Name));
    }

    [Fact]
    public void HostileNamesStayOnOneLine()
    {
        var m = OnnxModels.ConvRelu();
        m.Graph.Node[0].Name = "evil\nnode\u001b[2J";
        m.Graph.Initializer.Remove(OnnxModels.Initializer(m, "B"));
        string message = OnnxModels.Refused(m);
        Assert.StartsWith($"{OnnxModels.Name}: node 'evil\\u000anode\\u001b[2J' (Conv): input 'B'", message);
    }

    // ---------------------------------------------------------------- external data

    /// <summary>W at offset 16 of weights.bin, B in sub/bias.bin, in a fresh directory.</summary>
    private static (ModelProto Model, string Directory) ExternalModel()
    {
        string dir = TempDir();
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        File.WriteAllBytes(Path.Combine(dir, "weights.bin"), [.. new byte[16], .. MemoryMarshal.AsBytes(OnnxModels.W.AsSpan()), .. new byte[3]]);
        File.WriteAllBytes(Path.Combine(dir, "sub", "bias.bin"), MemoryMarshal.AsBytes(OnnxModels.B.AsSpan()).ToArray());
        var m = OnnxModels.ConvRelu();
        var w = OnnxModels.Initializer(m, "W");
        w.RawData = ByteString.Empty;
        MakeExternal(w, ("location", "weights.bin"), ("offset", "16"), ("length", "216"));
        var b = OnnxModels.Initializer(m, "B");
        b.FloatData.Clear();
        MakeExternal(b, ("location", "sub/bias.bin"), ("checksum", "ignored"));
        return (m, dir);
    }

    private static void MakeExternal(TensorProto t, params (string Key, string Value)[] entries)
    {
        t.DataLocation = TensorProto.Types.DataLocation.External;
        t.ExternalData.Clear();
        foreach (var (key, value) in entries) t.ExternalData.Add(new StringStringEntryProto { Key = key, Value = value });
    }

    [Fact]
    public void ExternalDataIsReadFromBesideTheModel()
    {
        var (m, dir) = ExternalModel();
        var model = OnnxModels.Parse(m, dir);
        Assert.Equal(OnnxModels.W, model.Initializers["W"].ToFloats());
        Assert.Equal(OnnxModels.B, model.Initializers["B"].ToFloats());

        string path = Path.Combine(dir, "model.onnx");
        File.WriteAllBytes(path, m.ToByteArray());
        Assert.Equal(OnnxModels.W, OnnxModel.Load(path).Initializers["W"].ToFloats());

        // Converted types read through the chunked path.
        double[] doubles = [0.25, -8, 1e5];
        File.WriteAllBytes(Path.Combine(dir, "d.bin"), MemoryMarshal.AsBytes(doubles.AsSpan()).ToArray());
        var d = new TensorProto { Name = "d", DataType = (int)DataType.Double, Dims = { 3 } };
        MakeExternal(d, ("location", "d.bin"));
        m.Graph.Initializer.Add(d);
        Assert.Equal([0.25f, -8f, 1e5f], OnnxModels.Parse(m, dir).Initializers["d"].ToFloats());

        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location 'weights.bin': the model was read from memory without a directory for external data",
            OnnxModels.Refused(m));
    }

    [Fact]
    public void ExternalDataOutsideTheModelsDirectoryIsRefused()
    {
        var (m, dir) = ExternalModel();
        string inner = Path.Combine(dir, "models");
        Directory.CreateDirectory(inner);
        File.Copy(Path.Combine(dir, "weights.bin"), Path.Combine(dir, "escape.bin"));
        var w = OnnxModels.Initializer(m, "W");

        w.ExternalData[0].Value = "../escape.bin";
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location '../escape.bin': '..' is refused; external data must lie beside the model",
            OnnxModels.Refused(m, inner));
        w.ExternalData[0].Value = "sub/../../escape.bin";
        Assert.Contains("tensor 'W': external location 'sub/../../escape.bin': '..' is refused", OnnxModels.Refused(m, inner));
        string absolute = Path.Combine(dir, "escape.bin");
        w.ExternalData[0].Value = absolute;
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location '{absolute}': absolute paths are refused; external data must lie beside the model",
            OnnxModels.Refused(m, inner));
        w.ExternalData[0].Value = "missing.bin";
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location 'missing.bin': no such file beside the model", OnnxModels.Refused(m, dir));
        w.ExternalData[0].Value = "sub";
        Assert.Contains("external location 'sub': no such file beside the model", OnnxModels.Refused(m, dir));
    }

    [Fact]
    public void ExternalRangeIsCheckedAgainstTheFileBeforeReading()
    {
        var (m, dir) = ExternalModel(); // weights.bin is 16 + 216 + 3 = 235 bytes
        var w = OnnxModels.Initializer(m, "W");
        w.ExternalData[1].Value = "1000";
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location 'weights.bin': offset 1000 is beyond the end of the file (235 bytes)",
            OnnxModels.Refused(m, dir));
        w.ExternalData[1].Value = "20";
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location 'weights.bin': 216 bytes at offset 20 run past the end of the file (235 bytes)",
            OnnxModels.Refused(m, dir));
        w.ExternalData[1].Value = "-4";
        Assert.Contains("external location 'weights.bin': offset '-4' is not a non-negative integer", OnnxModels.Refused(m, dir));
        w.ExternalData[1].Value = "16";
        w.ExternalData[2].Value = "212";
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external location 'weights.bin': dims [3, 2, 3, 3] of FLOAT need 216 bytes, length says 212",
            OnnxModels.Refused(m, dir));

        w.ExternalData.RemoveAt(0);
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': has data_location EXTERNAL but no external_data 'location'", OnnxModels.Refused(m, dir));
        (m, dir) = ExternalModel();
        OnnxModels.Initializer(m, "W").RawData = Raw<float>(OnnxModels.W);
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': has data_location EXTERNAL and also raw_data", OnnxModels.Refused(m, dir));
    }

    [Fact]
    public void ExternalFileShrunkAfterLoadIsReportedWhenRead()
    {
        var (m, dir) = ExternalModel();
        var model = OnnxModels.Parse(m, dir);
        File.WriteAllBytes(Path.Combine(dir, "weights.bin"), new byte[20]);
        var e = Assert.Throws<OnnxFormatException>(() => model.Initializers["W"].ToFloats());
        Assert.Equal($"{OnnxModels.Name}: tensor 'W': external file 'weights.bin' ended at byte 20; it was changed or truncated after the model was loaded",
            e.Message);
    }

    // ---------------------------------------------------------------- real models (ML.NET's ResNet18 package, restored by Tests.csproj)

    private static string PackageFile(string relativePath) =>
        NuGetPackages.FindFile(NuGetPackages.ResNet18Id, NuGetPackages.ResNet18Version, relativePath)
        ?? throw new InvalidOperationException(
            $"{relativePath} is not in {NuGetPackages.GlobalPackagesFolder}/{NuGetPackages.ResNet18Id}/{NuGetPackages.ResNet18Version}: run dotnet restore Tests (PackageDownload in Tests.csproj)");

    [Fact]
    public void ResNet18FromMlNetLoads()
    {
        var model = OnnxModel.Load(PackageFile(NuGetPackages.ResNet18Model));
        Assert.Equal(8, model.Opset);
        Assert.Equal(74, model.Nodes.Count);
        var input = Assert.Single(model.Inputs);
        Assert.Equal(("Input247", (int)DataType.Float), (input.Name, input.ElemType));
        Assert.Equal([1L, 3, 224, 224], input.Dims);
        Assert.Equal("Pooling395_Output_0", Assert.Single(model.Outputs).Name);

        // Every initializer a node reads converts, and the conv weights have the shapes ResNet18 has.
        // ML.NET's CNTK export: every conv has its BatchNormalization; the last stage has three blocks, not two.
        Assert.Equal(["Add 9", "AveragePool 1", "BatchNormalization 22", "Conv 22", "MaxPool 1", "Relu 19"],
            model.Nodes.GroupBy(n => n.OpType).Select(g => $"{g.Key} {g.Count()}").Order());
        var convWeights = model.Nodes.Where(n => n.OpType == "Conv").Select(n => model.Initializers[n.Input[1]]).ToList();
        Assert.Equal([64L, 3, 7, 7], convWeights[0].Dims);
        Assert.Equal(3, convWeights.Count(w => w.Dims[2] == 1)); // the projection shortcuts
        long parameters = 0;
        foreach (var t in model.Initializers.Values)
        {
            var values = t.DataType == (int)DataType.Int64 ? t.ToInt64s().Select(v => (float)v).ToArray() : t.ToFloats();
            Assert.Equal(t.Elements, values.LongLength);
            int bad = Array.FindIndex(values, v => !float.IsFinite(v));
            Assert.True(bad < 0, $"{t.Name}[{bad}] is not finite");
            parameters += t.Elements;
        }
        Assert.Equal(110, model.Initializers.Count);
        Assert.Equal(15_908_800, parameters);
    }

    [Fact]
    public void ResNet18PreprocessGraphLoads()
    {
        var model = OnnxModel.Load(PackageFile(NuGetPackages.ResNet18Preprocess));
        Assert.Equal(["Concat", "Split", "Sub"], model.Nodes.Select(n => n.OpType).Distinct().Order());
        Assert.Equal("OriginalInput", Assert.Single(model.Inputs).Name);
        var mean = model.Initializers["MeanImage"];
        Assert.Equal([1L, 3, 224, 224], mean.Dims);
        float[] values = mean.ToFloats();
        Assert.Equal(3 * 224 * 224, values.Length);
        Assert.Contains(values, v => v != 0);
    }

    // ---------------------------------------------------------------- helpers

    private static ByteString Raw<T>(T[] values) where T : unmanaged => ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "tp7-onnx-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
