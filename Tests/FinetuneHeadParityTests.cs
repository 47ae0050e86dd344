using System.Text.Json;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// `tp7 finetune --tune head --no-shuffle --dropout 0` against tools/reference_finetune.py (PyTorch) on data/demo
/// (10 classes, 200 train / 100 test): the same random-init VGG16 with random biases, the same initial head
/// (reference_finetune.py --write-init, seed 0), 3 epochs of SGD (lr 0.01, momentum 0.9, no weight decay), batch 16
/// in listing order. Same test accuracy and at least 99 % identical predictions.
/// </summary>
[Collection("reference")]
public sealed class FinetuneHeadParityTests(ReferenceFiles refs, ITestOutputHelper output)
{
    [Fact]
    public void HeadTrainingMatchesPyTorchOnTheDemoSet()
    {
        string w = RepoPaths.ScriptsHash("convert_weights.py", "tp7_safetensors.py");
        string f = RepoPaths.ScriptsHash("reference_finetune.py", "reference_pipeline.py");
        string head = Path.Combine(RepoPaths.Cache, $"head10-seed0-{f}.safetensors");
        Python.Cached(head, "reference_finetune.py", "--write-init", head, "--classes", "10", "--seed", "0");
        string refDir = Path.Combine(RepoPaths.Cache, $"ref-finetune-demo-{w}{f}");
        Python.Cached(Path.Combine(refDir, "report.json"), "reference_finetune.py", "--data", DemoData.Root, "--weights", refs.Weights,
            "--init", head, "--epochs", "3", "--batch", "16", "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9",
            "--weight-decay", "0", "--out", refDir);

        using var scratch = new ScratchDir("tp7-head-parity");
        Dictionary<string, float[]> headTensors;
        using (var h = SafeTensorsFile.Open(head))
            headTensors = new() { [Vgg16Architecture.HeadWeight] = h.ReadFloat32(Vgg16Architecture.HeadWeight), [Vgg16Architecture.HeadBias] = h.ReadFloat32(Vgg16Architecture.HeadBias) };
        string init = WeightFiles.Write(scratch["init-head10.safetensors"], WeightsLocator.Load(refs.Weights), headTensors, headRows: 10);
        string outDir = scratch["out"];
        var r = CliRunner.RunOk(scratch.Path, ["finetune", "--data", DemoData.Root, "--tune", "head", "--init", init, "--epochs", "3",
            "--batch", "16", "--lr", "0.01", "--momentum", "0.9", "--wd", "0", "--no-shuffle", "--dropout", "0", "--out", outDir],
            timeout: TimeSpan.FromMinutes(15));
        output.WriteLine(r.Stdout);

        using var ours = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "report.json")));
        using var theirs = JsonDocument.Parse(File.ReadAllText(Path.Combine(refDir, "report.json")));
        var ourLoss = ours.RootElement.GetProperty("epochs").EnumerateArray().Select(e => e.GetProperty("train_loss").GetDouble()).ToArray();
        var torchLoss = theirs.RootElement.GetProperty("epoch_loss").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(3, ourLoss.Length);
        Assert.Equal(3, torchLoss.Length);
        for (int e = 0; e < 3; e++)
            output.WriteLine($"epoch {e + 1}: train loss ours {ourLoss[e]:G8}  torch {torchLoss[e]:G8}  rel diff {Math.Abs(ourLoss[e] - torchLoss[e]) / torchLoss[e]:E2}");

        var ourPred = ReadPredictions(Path.Combine(outDir, "predictions.csv"), p => Path.GetRelativePath(DemoData.Root, p));
        var torchPred = ReadPredictions(Path.Combine(refDir, "predictions.csv"), p => p);
        Assert.Equal(100, torchPred.Count);
        Assert.Equal(torchPred.Keys.Order(StringComparer.Ordinal), ourPred.Keys.Order(StringComparer.Ordinal));
        int same = torchPred.Count(kv => ourPred[kv.Key].Pred == kv.Value.Pred);
        double accOurs = ours.RootElement.GetProperty("accuracy").GetDouble(), accTorch = theirs.RootElement.GetProperty("accuracy").GetDouble();
        output.WriteLine($"accuracy ours {accOurs:P2} torch {accTorch:P2}; identical predictions {same}/{torchPred.Count}");
        foreach (var kv in torchPred.Where(kv => ourPred[kv.Key].Pred != kv.Value.Pred))
            output.WriteLine($"  {kv.Key}: true {kv.Value.True}, ours {ourPred[kv.Key].Pred}, torch {kv.Value.Pred}");
        Assert.True(same >= 0.99 * torchPred.Count, $"{same}/{torchPred.Count} identical predictions");
        Assert.Equal(accTorch, accOurs, 1e-12);
    }

    static Dictionary<string, (string True, string Pred)> ReadPredictions(string path, Func<string, string> key)
    {
        var lines = File.ReadAllLines(path);
        Assert.StartsWith("path,true,", lines[0]);
        return lines.Skip(1).Where(l => l.Length > 0).Select(l => l.Split(','))
            .ToDictionary(c => key(c[0]).Replace('\\', '/'), c => (c[1], c[2]));
    }
}
