using Onnx;
using Tp7.Tests.Infrastructure;

namespace Tp7.Tests;

/// <summary>
/// The contract between tools/make_onnx_fixtures.py and the importer's tests: every reference value is a named
/// output of the graph with the manifest's shape, readable by our .npy reader, and the file holds what its manifest
/// says (opset, BatchNorm folded or kept).
/// </summary>
public sealed class OnnxFixtureTests
{
    [Theory]
    [InlineData("resnet18-opset13", 13, 9, 0)]
    [InlineData("resnet18-opset13-bn", 13, 9, 20)]
    [InlineData("mobilenet_v2-opset11", 11, 5, 0)]
    public void EveryReferenceIsANamedGraphOutputWithItsShape(string name, int opset, int outputs, int batchNormNodes)
    {
        var f = OnnxFixture.Get(name);
        ModelProto model;
        using (var s = File.OpenRead(f.ModelPath)) model = ModelProto.Parser.ParseFrom(s);

        Assert.Equal(opset, f.Opset);
        Assert.Equal(opset, model.OpsetImport.Single(o => o.Domain is "" or "ai.onnx").Version);
        Assert.Equal("input", model.Graph.Input[0].Name);
        Assert.Equal(f.OutputNames, model.Graph.Output.Select(o => o.Name));
        Assert.Equal(outputs, f.OutputNames.Count);
        Assert.Equal("logits", f.OutputNames[0]);
        Assert.Equal(batchNormNodes, model.Graph.Node.Count(n => n.OpType == "BatchNormalization"));
        Assert.Equal(batchNormNodes > 0 ? "kept" : "folded", f.BatchNorm);

        var produced = model.Graph.Node.SelectMany(n => n.Output).ToHashSet();
        foreach (var output in model.Graph.Output)
        {
            Assert.Contains(output.Name, produced);
            var dims = output.Type.TensorType.Shape.Dim;
            Assert.Equal("batch", dims[0].DimParam);   // dynamic batch axis
            var (data, shape) = f.Read(output.Name);
            Assert.Equal(f.Shapes[output.Name], shape);
            Assert.Equal(2, shape[0]);
            Assert.Equal(dims.Skip(1).Select(d => d.DimValue), shape.Skip(1));
            Assert.All(data, v => Assert.True(float.IsFinite(v), $"{name}/{output.Name}: non-finite value"));
        }

        var (x, xShape) = f.Input;
        Assert.Equal([2L, 3, 224, 224], xShape);
        double mean = x.Average(v => (double)v), std = Math.Sqrt(x.Average(v => ((double)v - mean) * ((double)v - mean)));
        Assert.InRange(mean, -0.01, 0.01);
        Assert.InRange(std, 0.99, 1.01);
        Assert.Throws<FileNotFoundException>(() => f.Read("conv1"));
    }
}
