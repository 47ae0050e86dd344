using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Onnx;
using Xunit.Abstractions;
using static Tp7.Tests.OnnxModels;
using DataType = Onnx.TensorProto.Types.DataType;

namespace Tp7.Tests;

/// <summary>
/// Each ONNX op the importer maps, in small models built here, run by our engine (host backend and the ILGPU CPU
/// accelerator) at batch 3 against ONNX Runtime on the same file: attributes and input forms of every op, BatchNorm
/// folded and standalone, the batch made free where the file fixes it at 1, and the refusals that name the node.
/// </summary>
public sealed class OnnxImporterTests(ITestOutputHelper log)
{
    const int Batch = 3;

    static TensorProto Init(string name, float[] values, params long[] dims) => new()
    {
        Name = name, DataType = (int)DataType.Float, Dims = { dims }, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
    };

    static TensorProto Int64s(string name, params long[] values) => new() { Name = name, DataType = (int)DataType.Int64, Dims = { values.Length }, Int64Data = { values } };

    static float[] Random(int n, int seed, double scale = 1, double offset = 0)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(offset + scale * (rng.NextDouble() * 2 - 1))).ToArray();
    }

    /// <summary>A model of one input x (batch fixed at 1 in the file, as many exporters write it) and one output y.</summary>
    static ModelProto Model(long opset, long[] inputDims, IEnumerable<TensorProto> inits, params NodeProto[] nodes)
    {
        var g = new GraphProto { Name = "t" };
        g.Input.Add(Value("x", DataType.Float, [1, .. inputDims.Select(d => (long?)d)]));
        g.Output.Add(new ValueInfoProto { Name = "y", Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1 } } });
        g.Initializer.AddRange(inits);
        g.Node.AddRange(nodes);
        return new ModelProto { IrVersion = 8, ProducerName = "tp7-tests", Graph = g, OpsetImport = { new OperatorSetIdProto { Domain = "", Version = opset } } };
    }

    /// <summary>Ours on the host and on ILGPU's CPU accelerator against ONNX Runtime, sample by sample; returns ours.</summary>
    float[] MatchesOnnxRuntime(ModelProto m, double tolerance = 1e-5)
    {
        var bytes = m.ToByteArray();
        var imported = OnnxImporter.Import(OnnxModel.Parse(bytes, "t.onnx", null));
        var input = imported.Graph.Inputs.Values.Single();
        var x = Random((int)(Batch * input.PerSample), 42);
        // ONNX Runtime runs the file as written (batch 1), one sample at a time.
        using var session = new InferenceSession(bytes, new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL });
        var want = new List<float>();
        for (int i = 0; i < Batch; i++)
        {
            var t = new DenseTensor<float>(x.AsMemory((int)(i * input.PerSample), (int)input.PerSample), input.WithBatch(1).Dims.ToArray());
            using var r = session.Run([NamedOnnxValue.CreateFromTensor("x", t)]);
            want.AddRange(r.First().AsTensor<float>().ToArray());
        }
        float[]? first = null;
        foreach (var device in new ComputeDevice[] { new HostDevice(), DeviceCatalog.Open("ilgpu-cpu", 0, _ => { }) })
            using (device)
            using (var net = new Network(device, imported.Graph))
            {
                foreach (var e in net.Parameters.Entries) net.Parameters.Write(e.Name, imported.Weights[e.Name]);
                var got = net.Forward(x, input.WithBatch(Batch), [imported.Graph.Output])[imported.Graph.Output];
                Assert.Equal(want.Count, got.Length);
                double max = want.Max(v => Math.Abs(v)), err = 0;
                for (int i = 0; i < got.Length; i++) err = Math.Max(err, Math.Abs(got[i] - want[i]));
                log.WriteLine($"{device.Name}: {string.Join(" ", imported.Graph.Nodes.Select(n => n.Op))}: max|diff| {err:E2} of max {max:G4}");
                Assert.True(err <= tolerance * Math.Max(max, 1e-6), $"{device.Name}: max |ours - ORT| {err:E3} (max |value| {max:G4})");
                first ??= got;
            }
        return first!;
    }

    [Fact]
    public void GemmWithAlphaBetaAndUntransposedB()
        => MatchesOnnxRuntime(Model(13, [6], [Init("B", Random(24, 1), 6, 4), Init("C", Random(4, 2), 4)],
            Node("gemm", "Gemm", ["x", "B", "C"], ["y"], Float("alpha", 0.5f), Float("beta", 2f), Int("transB", 0))));

    [Fact]
    public void GemmTransBAndMatMulWithAConstantBecomeLinear()
    {
        var m = Model(13, [6], [Init("W", Random(24, 1), 4, 6), Init("M", Random(20, 3), 4, 5), Init("b", Random(5, 4), 5)],
            Node("gemm", "Gemm", ["x", "W"], ["h"], Int("transB", 1)),
            Node("mm", "MatMul", ["h", "M"], ["g"]),
            Node("add", "Add", ["g", "b"], ["y"]));
        MatchesOnnxRuntime(m);
        var g = OnnxImporter.Import(OnnxModel.Parse(m.ToByteArray(), "t.onnx", null)).Graph;
        Assert.Equal(["Linear", "Linear", "Add"], g.Nodes.Select(n => n.Op));
        Assert.Equal("h", Tp7.Engine.Model.ImageModel.DefaultFeatureLayer(g)); // the input of the last fully connected layer
    }

    [Fact]
    public void ConvFamilyWithStandaloneBatchNormClipLeakyReluAveragePoolFlattenSoftmax()
    {
        int c = 2, k = 4;
        var m = Model(13, [c, 9, 8],
        [
            Init("W", Random(k * c * 9, 5, 0.5), k, c, 3, 3), Init("Bc", Random(k, 6), k),
            Init("s", Random(k, 7, 0.5, 1), k), Init("bb", Random(k, 8), k), Init("mu", Random(k, 9), k), Init("var", Random(k, 10, 0.4, 1), k),
            Init("lo", [-0.3f]), Init("hi", [0.8f]),
        ],
            Node("conv", "Conv", ["x", "W", "Bc"], ["c"], Ints("kernel_shape", 3, 3), Ints("pads", 1, 0, 2, 1), Ints("strides", 1, 2)),
            Node("relu", "Relu", ["c"], ["r"]),
            Node("bn", "BatchNormalization", ["r", "s", "bb", "mu", "var"], ["n"], Float("epsilon", 1e-3f)),
            Node("clip", "Clip", ["n", "lo", "hi"], ["cl"]),
            Node("leaky", "LeakyRelu", ["cl"], ["l"], Float("alpha", 0.2f)),
            Node("pool", "AveragePool", ["l"], ["p"], Ints("kernel_shape", 3, 2), Ints("pads", 1, 1, 0, 0), Ints("strides", 2, 1), Int("count_include_pad", 1)),
            Node("flat", "Flatten", ["p"], ["f"], Int("axis", 1)),
            Node("soft", "Softmax", ["f"], ["y"], Int("axis", 1)));
        MatchesOnnxRuntime(m);
        var g = OnnxImporter.Import(OnnxModel.Parse(m.ToByteArray(), "t.onnx", null)).Graph;
        Assert.Contains(g.Nodes, n => n.Op == "BatchNormalization"); // after a ReLU: an op of its own
    }

    [Fact]
    public void BatchNormAfterAConvIsFoldedUnlessTheConvOutputIsReadElsewhere()
    {
        int c = 3, k = 4;
        TensorProto[] inits =
        [
            Init("W", Random(k * c * 9, 5, 0.5), k, c, 3, 3),
            Init("s", Random(k, 7, 0.5, 1), k), Init("bb", Random(k, 8), k), Init("mu", Random(k, 9), k), Init("var", Random(k, 10, 0.4, 1), k),
        ];
        var folded = Model(9, [c, 6, 6], inits,
            Node("conv", "Conv", ["x", "W"], ["c"], Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)),
            Node("bn", "BatchNormalization", ["c", "s", "bb", "mu", "var"], ["y"]));
        MatchesOnnxRuntime(folded);
        Assert.Equal(["Conv"], OnnxImporter.Import(OnnxModel.Parse(folded.ToByteArray(), "t.onnx", null)).Graph.Nodes.Select(n => n.Op));

        var shared = Model(9, [c, 6, 6], inits,
            Node("conv", "Conv", ["x", "W"], ["c"], Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)),
            Node("bn", "BatchNormalization", ["c", "s", "bb", "mu", "var"], ["n"]),
            Node("sum", "Add", ["n", "c"], ["y"]));
        MatchesOnnxRuntime(shared);
        Assert.Equal(["Conv", "BatchNormalization", "Add"], OnnxImporter.Import(OnnxModel.Parse(shared.ToByteArray(), "t.onnx", null)).Graph.Nodes.Select(n => n.Op));
    }

    [Fact]
    public void GroupedDilatedConvAndCeilModeMaxPool()
        => MatchesOnnxRuntime(Model(13, [4, 11, 10], [Init("W", Random(6 * 2 * 9, 11, 0.5), 6, 2, 3, 3), Init("B", Random(6, 12), 6)],
            Node("conv", "Conv", ["x", "W", "B"], ["c"], Ints("kernel_shape", 3, 3), Ints("dilations", 2, 2), Int("group", 2), Ints("pads", 2, 2, 2, 2)),
            Node("pool", "MaxPool", ["c"], ["y"], Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Int("ceil_mode", 1))));

    [Fact]
    public void DepthwiseConvWithSamePaddingAndClipAttributesOfOpset9()
        => MatchesOnnxRuntime(Model(9, [3, 7, 9], [Init("W", Random(3 * 9, 13, 0.5), 3, 1, 3, 3)],
            Node("conv", "Conv", ["x", "W"], ["c"], Ints("kernel_shape", 3, 3), Int("group", 3), Ints("strides", 2, 2),
                new AttributeProto { Name = "auto_pad", Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8("SAME_UPPER") }),
            Node("clip", "Clip", ["c"], ["y"], Float("min", 0f), Float("max", 0.5f))));

    [Fact]
    public void ShapeOpsWithAFixedBatchOfOne()
        => MatchesOnnxRuntime(Model(13, [2, 3, 4],
            [Int64s("shape", 1, -1, 5), Int64s("sizes", 3, 3, 2), Init("k", Random(5, 14), 5), Init("d", Random(2, 15, 0.2, 1), 2, 1, 1)],
            Node("t", "Transpose", ["x"], ["tr"], Ints("perm", 0, 3, 1, 2)),          // (1, 4, 2, 3)
            Node("div", "Div", ["x", "d"], ["dv"]),                                     // (1, 2, 3, 4) / (2, 1, 1)
            Node("tr2", "Transpose", ["dv"], ["dt"], Ints("perm", 0, 3, 1, 2)),
            Node("cat", "Concat", ["tr", "dt"], ["cc"], Int("axis", 1)),               // (1, 8, 2, 3)
            Node("split", "Split", ["cc", "sizes"], ["s0", "s1", "s2"], Int("axis", 1)), // 3 + 3 + 2 channels
            Node("mul", "Mul", ["s0", "s1"], ["m"]),
            Node("sub", "Sub", ["m", "s1"], ["sb"]),
            Node("cat2", "Concat", ["sb", "s2"], ["c2"], Int("axis", 1)),              // (1, 5, 2, 3)
            Node("rs", "Reshape", ["c2", "shape"], ["rr"]),                              // (1, 6, 5)
            Node("mk", "Mul", ["rr", "k"], ["y"])));

    [Fact]
    public void SoftmaxOfOpset11FlattensFromItsAxis()
        => MatchesOnnxRuntime(Model(11, [2, 3, 4], [], Node("soft", "Softmax", ["x"], ["y"], Int("axis", 1))));

    [Fact]
    public void ConstantsIdentityAndDropoutAreFoldedAway()
    {
        var constant = new TensorProto { Name = "c", DataType = (int)DataType.Float, Dims = { 1 }, FloatData = { 2.5f } };
        var m = Model(13, [5], [],
            Node("k", "Constant", [], ["kc"], new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = constant }),
            Node("id", "Identity", ["x"], ["i"]),
            Node("drop", "Dropout", ["i"], ["dr"]),
            Node("mul", "Mul", ["dr", "kc"], ["y"]));
        MatchesOnnxRuntime(m);
        Assert.Equal(["Mul"], OnnxImporter.Import(OnnxModel.Parse(m.ToByteArray(), "t.onnx", null)).Graph.Nodes.Select(n => n.Op));
    }

    static string Refusal(ModelProto m)
    {
        var e = Assert.Throws<OnnxFormatException>(() => OnnxImporter.Import(OnnxModel.Parse(m.ToByteArray(), "t.onnx", null)));
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void AnUnsupportedModelIsRefusedListingEveryUnsupportedNodeWithItsOpset()
    {
        var msg = Refusal(Model(13, [4], [Int64s("idx", 0)],
            Node("g1", "Gather", ["x", "idx"], ["a"]),
            Node("relu", "Relu", ["a"], ["b"]),
            Node("lrn", "LRN", ["b"], ["c"], Int("size", 3)),
            new NodeProto { Name = "custom", OpType = "Foo", Domain = "com.example", Input = { "c" }, Output = { "y" } }));
        Assert.Equal("t.onnx: 3 unsupported nodes: g1 (Gather, opset 13); lrn (LRN, opset 13); custom (com.example.Foo, opset 13)", msg);
    }

    [Fact]
    public void BadShapesAreRefusedNamingTheNode()
    {
        Assert.Contains("node 'rs' (Reshape): shape [2, -1] reshapes across the batch dimension",
            Refusal(Model(13, [4], [Int64s("shape", 2, -1)], Node("rs", "Reshape", ["x", "shape"], ["y"]))));
        Assert.Contains("node 'rs' (Reshape)", Refusal(Model(13, [4], [], Node("rs", "Reshape", ["x", "nothere"], ["y"]))));
        Assert.Contains("node 'conv' (Conv)",
            Refusal(Model(13, [3, 5, 5], [Init("W", Random(4 * 2 * 9, 1), 4, 2, 3, 3)], Node("conv", "Conv", ["x", "W"], ["y"], Ints("kernel_shape", 3, 3)))));
        Assert.Contains("node 't' (Transpose): perm [1, 0] moves the batch axis",
            Refusal(Model(13, [4], [], Node("t", "Transpose", ["x"], ["y"], Ints("perm", 1, 0)))));
        Assert.Contains("node 'gemm' (Gemm): transA=1",
            Refusal(Model(13, [4], [Init("B", Random(8, 1), 4, 2)], Node("gemm", "Gemm", ["x", "B"], ["y"], Int("transA", 1)))));
    }
}
