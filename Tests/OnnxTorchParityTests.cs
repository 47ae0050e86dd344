using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Model;
using Tp7.Engine.Onnx;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// torchvision's VGG16, ResNet18 (BatchNorm folded by the exporter, and kept as nodes) and MobileNetV2 with random
/// weights, random BatchNorm statistics and random biases, exported by tools/export_onnx.py, imported onto our graph
/// and run on the host backend at batch 2: the logits and every tapped module output against PyTorch, each within
/// 1e-4 of its max |value|.
/// </summary>
public sealed class OnnxTorchParityTests(ITestOutputHelper log)
{
    const double Tolerance = 1e-4;

    [Theory]
    [InlineData("resnet18-opset13")]
    [InlineData("resnet18-opset13-bn")]
    [InlineData("mobilenet_v2-opset11")]
    [InlineData("vgg16-opset13")]
    public void ImportedTorchvisionModelMatchesPyTorch(string name)
    {
        var f = OnnxFixture.Get(name);
        var imported = OnnxImporter.Load(f.ModelPath);
        log.WriteLine($"{name}: opset {imported.Opset}, {imported.Graph.Nodes.Count} nodes ({string.Join(", ", imported.Graph.Nodes.GroupBy(n => n.Op).Select(g => $"{g.Key} {g.Count()}"))}), {imported.ParameterCount:N0} parameters");
        if (f.BatchNorm == "kept") Assert.DoesNotContain(imported.Graph.Nodes, n => n.Op == "BatchNormalization"); // folded at load
        var (x, shape) = f.Input;
        int n = (int)shape[0];
        using var host = new HostDevice();
        using var model = new ImageModel(host, imported, name, Tp7.Engine.Imaging.Preprocessing.ImageNet);
        Assert.Equal(1000, model.NumClasses);
        var got = model.Forward(x, n, 224, 224, f.OutputNames.ToArray());
        foreach (var value in f.OutputNames)
        {
            var (want, wantShape) = f.Read(value);
            var g = got[value];
            Assert.Equal(want.Length, g.Length);
            double max = want.Max(v => Math.Abs(v)), err = 0;
            for (int i = 0; i < want.Length; i++) err = Math.Max(err, Math.Abs(g[i] - want[i]));
            log.WriteLine($"  {value,-14} [{string.Join(", ", wantShape)}] max|torch| {max,9:G4}  max|diff| {err:E2} ({err / max:E2})");
            Assert.True(err <= Tolerance * max, $"{name} {value}: max |ours - torch| = {err:E3}, {err / max:E3} of max |value| {max:G4}");
        }
        // The default feature layer is the input of the last Gemm (ResNet: flatten; MobileNet: the classifier's input).
        Assert.Equal(1000, model.LayerShape(model.Graph.Output)[1]);
        Assert.NotEqual(model.Graph.Output, model.DefaultLayer);
    }
}
