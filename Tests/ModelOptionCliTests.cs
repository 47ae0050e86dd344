using Google.Protobuf;
using System.Text.Json;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>`--model vgg16|resnet18|PATH.onnx` on the verbs, as a user runs them: what each prints and every refusal, in one line, before any work.</summary>
public sealed class ModelOptionCliTests(ITestOutputHelper log)
{
    [Fact]
    public void InfoShowsResNet18FromTheGraph()
    {
        using var tmp = new ScratchDir("tp7-model-info");
        var r = CliRunner.RunOk(tmp.Path, ["info", "--model", "resnet18", "--json"]);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Equal("resnet18", root.GetProperty("model").GetString());
        Assert.Equal(15_891_328, root.GetProperty("conv_parameters").GetInt64()); // 15.9 M after folding the BatchNorms
        Assert.InRange(root.GetProperty("total_macs").GetDouble(), 2.03e9, 2.06e9);
        var last = root.GetProperty("layers").EnumerateArray().Last();
        Assert.Equal("pool5", last.GetProperty("tap").GetString());
        Assert.Equal([512, 1, 1], last.GetProperty("output_shape").EnumerateArray().Select(e => e.GetInt32()));
        var table = CliRunner.RunOk(tmp.Path, ["info", "--model", "resnet18"]);
        Assert.Contains("Microsoft.ML.DnnImageFeaturizer.ResNet18 0.23.1 (MIT)", table.Stdout);
    }

    [Theory]
    [InlineData(new[] { "info", "--model", "resnet50" }, "tp7 info: --model: 'resnet50' is not vgg16, resnet18 or a path to an .onnx file")]
    [InlineData(new[] { "info", "--model", "missing.onnx" }, "tp7 info: --model: missing.onnx: no such ONNX file")]
    [InlineData(new[] { "extract", "--data", ".", "--out", "f.npy", "--model", "resnet18", "--weights", "w.safetensors" },
        "tp7 extract: --weights holds VGG16 weights; it does not go with --model resnet18")]
    [InlineData(new[] { "finetune", "--model", "resnet18", "--tune", "all" },
        "tp7 finetune: --tune all: --model resnet18 takes --tune head only (full backpropagation through imported networks is not supported yet)")]
    [InlineData(new[] { "extract", "--data", ".", "--out", "f.npy", "--model", "resnet18", "--mean", "0.5,x,0.5" },
        "tp7 extract: --mean: 'x' is not a number (expected R,G,B, e.g. 0.485,0.456,0.406)")]
    [InlineData(new[] { "extract", "--data", ".", "--out", "f.npy", "--model", "resnet18", "--range", "7" },
        "tp7 extract: --range must be 1 or 255, got 7")]
    public void BadModelOptionsFailInOneLine(string[] args, string message)
    {
        using var tmp = new ScratchDir("tp7-model-bad");
        var r = CliRunner.Run(tmp.Path, args);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal([message], r.StderrLines);
    }

    [Fact]
    public void AHostileOnnxFileIsRefusedInOneLine()
    {
        using var tmp = new ScratchDir("tp7-model-hostile");
        var bytes = OnnxModels.ConvRelu().ToByteArray();
        File.WriteAllBytes(tmp["cut.onnx"], bytes[..(bytes.Length / 2)]);
        var r = CliRunner.Run(tmp.Path, ["info", "--model", "cut.onnx"]);
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.StderrLines);
        Assert.StartsWith("tp7 info: cut.onnx: ", line);
        log.WriteLine(line);
    }

    [Fact]
    public void LayersAndFeatureMapsOfResNet18()
    {
        using var tmp = new ScratchDir("tp7-model-maps");
        string photo = Path.Combine(RepoPaths.SklearnImages, "china.jpg");
        var bad = CliRunner.Run(tmp.Path, ["featuremaps", photo, "--model", "resnet18", "--layer", "pool5", "--out", tmp["m.png"], "--device", "cpu"]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal(["tp7 featuremaps: pool5 is a vector of 512 values, not feature maps; pick a convolutional or pooling layer"], bad.StderrLines);
        var r = CliRunner.RunOk(tmp.Path, ["featuremaps", photo, "--model", "resnet18", "--out", tmp["m.png"], "--device", "cpu"]);
        Assert.Contains("of 64 maps of BatchNormalization251_Output_0 (112x112)", r.Stdout); // the stem convolution, BN folded in
        Assert.True(new FileInfo(tmp["m.png"]).Length > 10_000);
        var unknown = CliRunner.Run(tmp.Path, ["featuremaps", photo, "--model", "resnet18", "--layer", "conv9", "--out", tmp["m.png"], "--device", "cpu"]);
        Assert.Equal(1, unknown.ExitCode);
        Assert.StartsWith("tp7 featuremaps: --layer: 'conv9' is not a layer of the model; taps: pool5; or any of its ", Assert.Single(unknown.StderrLines));
    }

    [Fact]
    public void ClassifyRefusesResNet18sPooledFeatures()
    {
        using var tmp = new ScratchDir("tp7-model-classify");
        var r = CliRunner.Run(tmp.Path, ["classify", Path.Combine(RepoPaths.SklearnImages, "china.jpg"), "--model", "resnet18", "--device", "cpu"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("tp7 classify: resnet18: its output [1, 512, 1, 1] is not (N, classes) logits", r.Stderr);
    }

    [Fact]
    public void FinetuneAHeadOnResNet18Features()
    {
        using var tmp = new ScratchDir("tp7-model-finetune");
        DemoData.CopySplit(tmp["data"], 3, 4, 2);
        var r = CliRunner.RunOk(tmp.Path, ["finetune", "--model", "resnet18", "--data", tmp["data"], "--epochs", "3", "--batch", "4", "--lr", "0.05",
            "--device", "cpu", "--out", tmp["out"]], timeout: TimeSpan.FromMinutes(5));
        log.WriteLine(r.Stdout);
        Assert.Contains("head.safetensors (head.weight, head.bias", r.Stdout);
        using var head = Tp7.Engine.IO.SafeTensorsFile.Open(Path.Combine(tmp["out"], "head.safetensors"));
        Assert.Equal([3L, 512L], head.Info("head.weight").Shape);
        Assert.Equal("resnet18", head.Metadata["model"]);
        Assert.Equal("pool5", head.Metadata["layer"]);
    }
}
