using System.Text.Json;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Engine.Training;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// `tp7 finetune` as a user runs it: bad input exits non-zero within 20 s with one stderr line naming the option (or
/// the data folder) at fault, before any training; and a small good run writes the model, the report and the curves,
/// and the model classifies an image into one of the dataset's classes.
/// </summary>
[Collection("reference")]
public sealed class FinetuneCliTests(ReferenceFiles refs, ITestOutputHelper output)
{
    public static TheoryData<string> BadInputs => ["one class", "--lr 0", "--lr -1", "--batch 0", "--tune bogus", "--tune from:nope",
        "--augment flip --tune head", "--init with 7 rows for 3 classes", "--resume without checkpoint"];

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void BadInputFailsFastWithOneLineNamingTheOption(string name)
    {
        using var scratch = new ScratchDir("tp7-finetune-bad");
        string data = scratch["data"];
        DemoData.CopySplit(data, classes: name == "one class" ? 1 : 3, train: 4, test: 2);
        var common = new[] { "finetune", "--data", data, "--size", "32", "--epochs", "1", "--out", scratch["out"] };
        (string[] Args, string Expect) c = name switch
        {
            "one class" => ([], data),
            "--lr 0" => (["--lr", "0"], "--lr"),
            "--lr -1" => (["--lr", "-1"], "--lr"),
            "--batch 0" => (["--batch", "0"], "--batch"),
            "--tune bogus" => (["--tune", "bogus"], "--tune"),
            "--tune from:nope" => (["--tune", "from:nope"], "--tune from:nope"),
            "--augment flip --tune head" => (["--augment", "flip", "--tune", "head"], "--augment"),
            "--init with 7 rows for 3 classes" => (["--init", WeightFiles.Write(scratch["init-7-rows.safetensors"], WeightsLocator.Load(refs.Weights),
                new Dictionary<string, float[]> { [Vgg16Architecture.HeadWeight] = new float[7 * 4096], [Vgg16Architecture.HeadBias] = new float[7] }, headRows: 7)], "--init"),
            "--resume without checkpoint" => (["--resume", Directory.CreateDirectory(scratch["empty"]).FullName], "--resume"),
            _ => throw new ArgumentException(name),
        };
        var r = CliRunner.Run(scratch.Path, [.. common, .. c.Args], timeout: TimeSpan.FromMinutes(2));
        output.WriteLine(r.ToString());
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(20), $"took {r.Elapsed.TotalSeconds:F1} s\n{r}");
        // A value refused while parsing (exit 2) is followed by the pointer to --help.
        var line = Assert.Single(r.StderrLines, l => !l.StartsWith("(see 'tp7 finetune --help')", StringComparison.Ordinal));
        Assert.Equal(r.ExitCode == 2 ? 2 : 1, r.StderrLines.Length);
        Assert.Contains(c.Expect, line);
        if (name == "one class") Assert.Contains("at least 2", line);
        Assert.False(File.Exists(Path.Combine(scratch["out"], "model.safetensors")), "a failed run wrote a model");
    }

    [Fact]
    public void SmallHeadRunWritesModelReportAndCurvesAndTheModelClassifies()
    {
        using var scratch = new ScratchDir("tp7-finetune-ok");
        string data = scratch["data"];
        var classes = DemoData.CopySplit(data, classes: 3, train: 8, test: 4);
        string init = WeightFiles.Write(scratch["init-head3.safetensors"], Finetune.StartingWeights(WeightsLocator.Load(refs.Weights), classes.Length, seed: 0));
        string outDir = scratch["out"];
        var r = CliRunner.RunOk(scratch.Path, ["finetune", "--data", data, "--tune", "head", "--epochs", "2", "--size", "32", "--batch", "8",
            "--no-shuffle", "--dropout", "0", "--init", init, "--out", outDir], timeout: TimeSpan.FromMinutes(5));
        output.WriteLine(r.ToString());

        using (var model = SafeTensorsFile.Open(Path.Combine(outDir, "model.safetensors")))
        {
            Assert.Equal([3L, 4096L], model.Info(Vgg16Architecture.HeadWeight).Shape);
            Assert.Equal([3L], model.Info(Vgg16Architecture.HeadBias).Shape);
            Assert.Equal(32, model.Tensors.Count);
            Assert.Equal(classes, JsonSerializer.Deserialize<string[]>(model.Metadata["classes"]));
        }
        using (var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "report.json"))))
        {
            var epochs = report.RootElement.GetProperty("epochs");
            Assert.Equal(2, epochs.GetArrayLength());
            foreach (var e in epochs.EnumerateArray())
            {
                double loss = e.GetProperty("train_loss").GetDouble();
                output.WriteLine($"epoch {e.GetProperty("epoch").GetInt32()}: train loss {loss:G6}, test accuracy {e.GetProperty("test_accuracy").GetDouble():P1}");
                Assert.True(double.IsFinite(loss) && loss > 0, $"train loss {loss}");
            }
            Assert.Equal(12, report.RootElement.GetProperty("num_test").GetInt32());
        }
        var png = File.ReadAllBytes(Path.Combine(outDir, "curves.png"));
        Assert.True(png.Length > 1000 && png[..8].SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), "curves.png is not a PNG");

        string image = Directory.GetFiles(Path.Combine(data, "test", classes[1])).Order(StringComparer.Ordinal).First();
        var cls = CliRunner.RunOk(scratch.Path, ["classify", "--weights", Path.Combine(outDir, "model.safetensors"), image], timeout: TimeSpan.FromMinutes(3));
        output.WriteLine(cls.ToString());
        // "  1.  87.12%     2  trouser": the top line names one of the dataset's classes, never an ImageNet one.
        var top = cls.Stdout.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith("1.", StringComparison.Ordinal));
        Assert.Contains(classes, name => top.EndsWith(" " + name, StringComparison.Ordinal));
        var ranked = cls.Stdout.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 2 && char.IsDigit(l[0]) && l[1] == '.').ToList();
        Assert.Equal(3, ranked.Count); // --top 5 shows at most the 3 classes there are
    }

    /// <summary>
    /// Full backpropagation through the CLI, stopped by --max-steps: every output is written as at the end, and the
    /// report says where it stopped; a diverging run (a huge --lr) stops naming the step.
    /// </summary>
    [Fact]
    public void TuneAllStopsAtMaxStepsWritingEveryOutputAndADivergingRunNamesItsStep()
    {
        using var scratch = new ScratchDir("tp7-finetune-all");
        string data = scratch["data"];
        var classes = DemoData.CopySplit(data, classes: 3, train: 2, test: 3);
        string outDir = scratch["out"];
        var r = CliRunner.RunOk(scratch.Path, ["finetune", "--data", data, "--tune", "all", "--epochs", "4", "--size", "32", "--batch", "4",
            "--max-steps", "3", "--augment", "flip,crop", "--init", refs.Weights, "--out", outDir], timeout: TimeSpan.FromMinutes(5));
        output.WriteLine(r.ToString());
        using (var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "report.json"))))
        {
            Assert.Equal(3, report.RootElement.GetProperty("steps").GetInt32());
            Assert.True(report.RootElement.GetProperty("stopped_at_max_steps").GetBoolean());
            Assert.Equal(2, report.RootElement.GetProperty("epochs").GetArrayLength()); // 2 steps per epoch: epoch 2 stopped after its first
        }
        foreach (var f in new[] { "model.safetensors", "checkpoint.safetensors", "curves.png", "confusion.png", "index.html", "predictions.csv" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), $"{f} missing");
        Assert.Contains("(stopped at --max-steps)", r.Stdout);

        var bad = CliRunner.Run(scratch.Path, ["finetune", "--data", data, "--tune", "head", "--epochs", "3", "--size", "32", "--batch", "4",
            "--lr", "1e30", "--init", refs.Weights, "--out", scratch["diverged"]], timeout: TimeSpan.FromMinutes(5));
        output.WriteLine(bad.ToString());
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Matches(@"loss is (NaN|∞|-∞|[0-9.E+]+) (at step \d+|after epoch \d+ \(step \d+\)): training diverged", bad.Stderr);
    }
}
