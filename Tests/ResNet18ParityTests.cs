using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Onnx;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// The ImageNet-trained ResNet18 of the NuGet package, imported onto our graph (preprocessing graph in front, 22
/// BatchNormalizations folded into their convolutions), against ONNX Runtime running the two original files: every
/// ReLU output, every residual sum and the pooled features on real photos, each within 1e-4 of its max |value|.
/// </summary>
public sealed class ResNet18ParityTests(ITestOutputHelper log)
{
    const double Tolerance = 1e-4;

    static string[] Photos => [Path.Combine(RepoPaths.SklearnImages, "china.jpg"), Path.Combine(RepoPaths.SklearnImages, "flower.jpg"),
        .. Directory.GetFiles(Path.Combine(DemoData.Root, "test", "bag")).Order(StringComparer.Ordinal).Take(1)];

    [Fact]
    public void EveryReluAndResidualAndTheFeaturesMatchOnnxRuntimeOnPhotos()
    {
        var (netPath, prePath) = ModelCatalog.FindResNet18();
        var onnx = OnnxModel.Load(netPath);
        var values = onnx.Nodes.Where(n => n.OpType is "Relu" or "Add").Select(n => n.Output[0]).Append(onnx.Outputs[0].Name).ToList();
        Assert.Equal(19 + 9 + 1, values.Count);

        var p = ModelCatalog.ResNet18Preprocessing;
        var x = new float[Photos.Length * p.TensorLength];
        for (int i = 0; i < Photos.Length; i++) ImageLoader.LoadTensor(Photos[i], p, x.AsSpan(i * p.TensorLength, p.TensorLength));

        Dictionary<string, float[]> want;
        using (var pre = new OrtReference(prePath))
        using (var net = new OrtReference(netPath, values))
        {
            var preprocessed = pre.Run(x, Photos.Length, ["PreprocessedInput"])["PreprocessedInput"];
            want = net.Run(preprocessed, Photos.Length, values);
            want["PreprocessedInput"] = preprocessed;
        }

        using var host = new HostDevice();
        using var model = ModelCatalog.OpenOnnx(host, "resnet18");
        Assert.Equal("pool5", model.Graph.Aliases[0].Alias);
        Assert.Equal("pool5", model.DefaultLayer); // no fully connected layer: the output (tapped as pool5) is the feature
        var got = model.Forward(x, Photos.Length, p.Size, p.Size, [.. want.Keys]);
        foreach (var (name, w) in want)
        {
            var g = got[name];
            Assert.Equal(w.Length, g.Length);
            double max = w.Max(v => Math.Abs(v)), err = 0;
            for (int i = 0; i < w.Length; i++) err = Math.Max(err, Math.Abs(g[i] - w[i]));
            log.WriteLine($"{name,-32} max|ref| {max,10:G4}  max|diff| {err:E2}  ({err / max:E2})");
            Assert.True(err <= Tolerance * max, $"{name}: max |ours - ORT| = {err:E3}, {err / max:E3} of max |value| {max:G4}");
        }
        // The features are the 512 pooled channels, non-negative (after a ReLU), and not all alike across photos.
        var f = got[onnx.Outputs[0].Name];
        Assert.Equal(Photos.Length * 512, f.Length);
        Assert.All(f, v => Assert.True(v >= 0));
    }

    [Fact]
    public void TheImportFoldsEveryBatchNormAndKeepsTheShapesOfThePackage()
    {
        var m = ModelCatalog.ImportResNet18();
        var ops = m.Graph.Nodes.GroupBy(n => n.Op).ToDictionary(g => g.Key, g => g.Count());
        Assert.False(ops.ContainsKey("BatchNormalization"));
        Assert.Equal(22, ops["Conv"]);
        Assert.Equal(19, ops["Relu"]);
        Assert.Equal(1, ops["MaxPool"]);
        Assert.Equal(1, ops["AveragePool"]);
        // The CNTK export has blocks 2/2/2/3: 9 residual sums; the preprocessing graph adds a Split, a Concat and a Sub.
        Assert.Equal(9, ops["Add"]);
        Assert.Equal(1, ops["Sub"]);
        Assert.Equal(1, ops["Split"]);
        Assert.Equal(1, ops["Concat"]);
        Assert.Equal(new[] { 1, 3, 224, 224 }, m.Graph.Inputs["OriginalInput"].Dims);
        var rows = ImageModel.Layers(m.Graph, 224);
        Assert.Equal(new[] { 1, 512, 1, 1 }, rows.Last().Output.Dims);
        double macs = rows.Where(r => r.Op == "Conv").Sum(r => r.Flops / 2);
        log.WriteLine($"conv multiply-adds {macs / 1e9:F3} G, parameters {m.ParameterCount:N0}, initializer values {m.InitializerValues:N0}");
        Assert.InRange(macs, 2.03e9, 2.06e9); // the issue measured 2.05 G
    }
}
