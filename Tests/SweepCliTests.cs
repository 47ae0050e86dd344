using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>3 classes x (4 train + 2 test) demo images, split into train/ and test/, and a feature cache the sweeps share.</summary>
public sealed class SweepDataset : IDisposable
{
    readonly ScratchDir tmp = new("tp7-sweep");
    public string Dir { get; }
    public string Cache => tmp["cache"];
    public string[] ClassNames { get; }

    public SweepDataset()
    {
        Dir = tmp["data"];
        ClassNames = DemoData.CopySplit(Dir, classes: 3, train: 4, test: 2);
    }

    public string Work(string name)
    {
        var d = tmp[name];
        Directory.CreateDirectory(d);
        return d;
    }

    public void Dispose() => tmp.Dispose();
}

/// <summary>
/// `tp7 sweep` end to end on a tiny dataset (VGG16 with in-memory random weights at 32x32, two layers, three C
/// values, two folds, no PCA and one PCA size): the files, their columns and numbers checked against each other and
/// against the rules the docs give (fold rule, selection rule, population std), the report's figures, the cache
/// serving a later sweep; and every bad option failing in one line before any feature is extracted.
/// </summary>
public sealed class SweepCliTests(SweepDataset data, ITestOutputHelper log) : IClassFixture<SweepDataset>
{
    static readonly string[] Required = ["layer", "pca", "C", "dim", "cv_mean", "cv_std", "selected", "test_accuracy", "svm_seconds"];

    string[] Args(string outDir, params string[] extra)
        => ["sweep", "--data", data.Dir, "--size", "32", "--device", "cpu", "--out", outDir, .. extra];

    [Fact]
    public void TinySweepWritesEveryFileWithOneSelectedCPerLayerAndPcaSize()
    {
        var dir = data.Work("tiny");
        var outDir = Path.Combine(dir, "out", "sweep");
        var r = CliRunner.RunOk(dir, Args(outDir, "--batch", "8", "--layers", "fc6,relu7", "--C", "0.1:10:3", "--folds", "2", "--pca", "none,4"), data.Cache,
            TimeSpan.FromMinutes(10));
        log.WriteLine(r.Stdout);

        // results.csv: the required columns first, then PCA time, limit hits and one column per fold.
        var lines = File.ReadAllLines(Path.Combine(outDir, "results.csv"));
        var header = lines[0].Split(',');
        Assert.Equal([.. Required, "pca_seconds", "iteration_limit_hits", "fold_1", "fold_2"], header);
        var rows = lines.Skip(1).Select(l => header.Zip(l.Split(','), (h, v) => (h, v)).ToDictionary(t => t.h, t => t.v)).ToList();
        Assert.Equal(2 * 2 * 3, rows.Count);
        double D(Dictionary<string, string> row, string col) => double.Parse(row[col], CultureInfo.InvariantCulture);
        Assert.Equal(["fc6", "relu7"], rows.Select(x => x["layer"]).Distinct());
        Assert.Equal(["none", "4"], rows.Select(x => x["pca"]).Distinct());
        Assert.Equal([0.1, 1, 10], rows.Select(x => D(x, "C")).Distinct()); // numpy.logspace(-1, 1, 3)
        foreach (var x in rows)
        {
            Assert.Equal(x["pca"] == "none" ? 4096 : 4, int.Parse(x["dim"], CultureInfo.InvariantCulture));
            double[] acc = [D(x, "fold_1"), D(x, "fold_2")];
            Assert.Equal(acc.Average(), D(x, "cv_mean"), 12);
            Assert.Equal(Math.Sqrt(acc.Average(f => (f - acc.Average()) * (f - acc.Average()))), D(x, "cv_std"), 12);
            // 6 training images per fold, 6 test images: accuracies are sixths.
            foreach (var a in acc.Append(D(x, "test_accuracy"))) Assert.Equal(Math.Round(a * 6), a * 6, 9);
            Assert.True(D(x, "svm_seconds") > 0, $"svm_seconds {x["svm_seconds"]}");
            Assert.True(x["pca"] == "none" ? D(x, "pca_seconds") == 0 : D(x, "pca_seconds") > 0, $"pca {x["pca"]}: pca_seconds {x["pca_seconds"]}");
        }
        // One selected row per (layer, PCA size): the best CV mean, the smallest C among equals.
        foreach (var g in rows.GroupBy(x => (x["layer"], x["pca"])))
        {
            var chosen = Assert.Single(g, x => x["selected"] == "1");
            var best = g.OrderByDescending(x => D(x, "cv_mean")).ThenBy(x => D(x, "C")).First();
            Assert.Equal(best["C"], chosen["C"]);
            Assert.All(g, x => Assert.Contains(x["selected"], new[] { "0", "1" }));
        }

        // results.json: the same rows, the settings, and a summary whose best is the best selected row by CV.
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")));
        var root = json.RootElement;
        Assert.Equal("tp7-sweep", root.GetProperty("format").GetString());
        Assert.Equal(12, root.GetProperty("rows").GetArrayLength());
        Assert.Equal(2, root.GetProperty("settings").GetProperty("folds").GetInt32());
        Assert.Equal(["none", "4"], root.GetProperty("settings").GetProperty("pca").EnumerateArray().Select(e => e.ToString()));
        Assert.Equal(2, root.GetProperty("explained_variance").GetArrayLength());
        Assert.Equal(4, root.GetProperty("explained_variance")[0].GetProperty("ratio").GetArrayLength());
        var selected = rows.Where(x => x["selected"] == "1").ToList();
        var top = selected.OrderByDescending(x => D(x, "cv_mean")).ThenBy(x => int.Parse(x["dim"], CultureInfo.InvariantCulture)).First();
        var bestJson = root.GetProperty("summary").GetProperty("best");
        Assert.Equal(top["layer"], bestJson.GetProperty("layer").GetString());
        Assert.Equal(top["pca"], bestJson.GetProperty("pca").ToString());
        var summary = root.GetProperty("summary").GetProperty("lines").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.StartsWith("Best by cross-validation: ", summary[0]);
        Assert.Contains(top["layer"], summary[0]);
        Assert.Contains(summary, l => l.StartsWith("PCA on ", StringComparison.Ordinal));
        foreach (var line in summary) Assert.Contains(line, r.Stdout);

        // folds.csv: the i-th training image of each class, in listing order, is in fold i mod 2.
        var folds = File.ReadAllLines(Path.Combine(outDir, "folds.csv")).Skip(1).Select(l => l.Split(',')).ToList();
        Assert.Equal(12, folds.Count);
        foreach (var g in folds.GroupBy(f => f[1]))
        {
            var expected = Directory.GetFiles(Path.Combine(data.Dir, "train", g.Key)).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(expected, g.Select(f => Path.GetFileName(f[0])));
            Assert.Equal(Enumerable.Range(0, 4).Select(i => (i % 2).ToString(CultureInfo.InvariantCulture)), g.Select(f => f[2]));
        }

        // index.html: every figure it shows is a PNG in the folder, and all three are there.
        var html = File.ReadAllText(Path.Combine(outDir, "index.html"));
        var images = Regex.Matches(html, "<img src=\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["accuracy_vs_c.png", "pca.png", "explained_variance.png"], images);
        foreach (var png in images)
        {
            var bytes = File.ReadAllBytes(Path.Combine(outDir, png));
            Assert.True(bytes.Length > 1000 && bytes[..4].SequenceEqual(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }), $"{png} is not a PNG");
        }
        Assert.Contains("Random weights", html);

        // A later sweep of one of those layers reads every row from the cache the first one filled.
        var again = CliRunner.RunOk(dir, Args(Path.Combine(dir, "again"), "--layers", "relu7", "--C", "1", "--folds", "2", "--pca", "none"), data.Cache);
        Assert.Contains("18 rows of relu7 from the cache", again.Stdout);
    }

    public static TheoryData<string[], int, string> BadOptions => new()
    {
        { ["--C", "0"], 2, "--C: '0' is not a positive number" },
        { ["--C", "1:0.1:3"], 2, "--C: '1:0.1:3': LO must be below HI" },
        { ["--C", "1e-3:1e2:0"], 2, "--C: '0' in '1e-3:1e2:0' is not a count of at least 1" },
        { ["--C", "0.1,x"], 2, "--C: 'x' is not a positive number" },
        { ["--folds", "1"], 2, "--folds must be at least 2, got 1" },
        { ["--pca", "none,abc"], 2, "--pca: 'abc' is neither 'none' nor a positive integer" },
        { ["--batch", "0"], 2, "--batch must be at least 1, got 0" },
        { ["--C", "1,0.1"], 1, "--C: values must be ascending" },
        { ["--pca", "4,none"], 1, "--pca: none (0) must come first, then the sizes in ascending order" },
        { ["--pca", "none,5000"], 1, "--pca 5000: more components than" },
        { ["--layers", "fc6,nope"], 1, "--layers: 'nope' is not a layer of the model" },
        { ["--folds", "5"], 1, "--folds 5: class" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadOptionsFailInOneLineBeforeExtraction(string[] options, int exitCode, string message)
    {
        var dir = data.Work("bad-" + string.Join("_", options).Replace(':', '-').Replace(',', '-'));
        var outDir = Path.Combine(dir, "out");
        var given = new Dictionary<string, string> { ["--layers"] = "fc6,relu7", ["--C"] = "1", ["--folds"] = "2", ["--pca"] = "none" };
        for (int i = 0; i < options.Length; i += 2) given[options[i]] = options[i + 1];
        var r = CliRunner.Run(dir, Args(outDir, [.. given.SelectMany(kv => new[] { kv.Key, kv.Value })]));
        Assert.True(r.ExitCode == exitCode, r.ToString());
        var errors = r.StderrLines.Where(l => l.StartsWith("tp7 sweep: ", StringComparison.Ordinal)).ToList();
        var line = Assert.Single(errors);
        Assert.Contains(message, line);
        Assert.DoesNotContain("train features", r.Stderr);
        Assert.False(Directory.Exists(outDir), $"{outDir} was created by a sweep that failed its checks");
    }
}
