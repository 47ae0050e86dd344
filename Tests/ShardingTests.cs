using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>The slice rule, the scheduler's environment and the listing fingerprint, without the CLI.</summary>
public sealed class ShardingTests
{
    [Fact]
    public void ShardsCoverEveryListingOnceInOrderInBlocksThatDifferByOneAtMost()
    {
        for (int n = 0; n <= 40; n++)
            for (int count = 1; count <= 12; count++)
            {
                var blocks = Enumerable.Range(0, count).Select(i => new Shard(i, count).Range(n)).ToList();
                Assert.Equal(Enumerable.Range(0, n), blocks.SelectMany(b => Enumerable.Range(b.Start, b.End - b.Start)));
                var sizes = blocks.Select(b => b.End - b.Start).ToList();
                Assert.True(sizes.Max() - sizes.Min() <= 1, $"{n} items in {count} shards: sizes {string.Join(",", sizes)}");
                for (int i = 0; i < count; i++) Assert.Equal((i * n / count, (i + 1) * n / count), blocks[i]);
            }
        // Products in 64 bits: the last block of a listing near int.MaxValue ends at it.
        Assert.Equal((1_333_333_333, 2_000_000_000), new Shard(2, 3).Range(2_000_000_000));
        Assert.Equal(["c", "d"], new Shard(1, 3).Slice(["a", "b", "c", "d", "e", "f", "g"]));
    }

    [Theory]
    [InlineData("0/1", 0, 1)]
    [InlineData("2/8", 2, 8)]
    [InlineData("7/8", 7, 8)]
    public void ShardSyntaxParses(string text, int index, int count)
    {
        Assert.Equal(new Shard(index, count), Shard.TryParse(text, out var why));
        Assert.Null(why);
    }

    [Theory]
    [InlineData("8/8", "'8/8': the index of a shard of 8 runs from 0 to 7")]
    [InlineData("1/0", "'1/0': the shard count must be at least 1")]
    [InlineData("-1/3", "'-1/3' is not a shard: write INDEX/COUNT, e.g. 0/4 for the first of four")]
    [InlineData("1", "'1' is not a shard: write INDEX/COUNT, e.g. 0/4 for the first of four")]
    [InlineData("1/3/4", "'1/3/4' is not a shard: write INDEX/COUNT, e.g. 0/4 for the first of four")]
    [InlineData("a/3", "'a/3' is not a shard: write INDEX/COUNT, e.g. 0/4 for the first of four")]
    public void BadShardSyntaxSaysWhy(string text, string message)
    {
        Assert.Null(Shard.TryParse(text, out var why));
        Assert.Equal(message, why);
    }

    static Func<string, string?> Env(params (string Name, string Value)[] vars)
        => name => vars.FirstOrDefault(v => v.Name == name).Value;

    [Fact]
    public void TheSchedulersEnvironmentGivesTheShard()
    {
        Assert.Equal(new Shard(2, 4), Sharding.FromEnvironment(4, Env(("JOB_COMPLETION_INDEX", "2")), "--shards 4"));
        // Slurm arrays need not start at 0 (--array=1-4), and may step (--array=0-30:10).
        Assert.Equal(new Shard(0, 4), Sharding.FromEnvironment(4, Env(("SLURM_ARRAY_TASK_ID", "0")), "--shards 4"));
        Assert.Equal(new Shard(3, 4), Sharding.FromEnvironment(4, Env(("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")), "--shards 4"));
        Assert.Equal(new Shard(2, 4), Sharding.FromEnvironment(4, Env(("SLURM_ARRAY_TASK_ID", "20"), ("SLURM_ARRAY_TASK_STEP", "10")), "--shards 4"));
        // Kubernetes' index wins when both are set.
        Assert.Equal(new Shard(1, 4), Sharding.FromEnvironment(4, Env(("JOB_COMPLETION_INDEX", "1"), ("SLURM_ARRAY_TASK_ID", "3")), "--shards 4"));
    }

    [Theory]
    [InlineData("", "", "", "--shards 3 takes this task's shard from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID (a Slurm job array), and neither is set: outside a scheduler give --shard INDEX/3")]
    [InlineData("x1", "", "", "JOB_COMPLETION_INDEX='x1' is not a task index (a whole number from 0)")]
    [InlineData("3", "", "", "JOB_COMPLETION_INDEX=3 is outside 0..2 for --shards 3: the Job's completions must equal the shard count")]
    [InlineData("", "1", "4", "SLURM_ARRAY_TASK_COUNT=4 but --shards 3: the array must have as many tasks as there are shards (#SBATCH --array=0-2; to rerun some of them alone, give each --shard INDEX/3)")]
    [InlineData("", "3", "", "SLURM_ARRAY_TASK_ID=3 (SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_STEP=1) is not one of the 3 tasks of --shards 3 (#SBATCH --array=0-2)")]
    [InlineData("", "-1", "", "SLURM_ARRAY_TASK_ID='-1' is not a task index (a whole number from 0)")]
    public void ABadOrMissingEnvironmentIsNamed(string k8s, string slurmId, string slurmCount, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => Sharding.FromEnvironment(3,
            Env(("JOB_COMPLETION_INDEX", k8s), ("SLURM_ARRAY_TASK_ID", slurmId), ("SLURM_ARRAY_TASK_COUNT", slurmCount)), "--shards 3"));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void TheListingFingerprintIgnoresTheRootAndSeesEveryOtherChange()
    {
        string[] classes = ["bag", "coat"];
        DatasetItem[] At(string root, params (string Path, int Label)[] items) => [.. items.Select(i => new DatasetItem(Path.Combine(root, i.Path), i.Label))];
        (string, int)[] listing = [(Path.Combine("bag", "a.png"), 0), (Path.Combine("coat", "b.png"), 1)];
        var here = Sharding.Fingerprint("/mnt/data", At("/mnt/data", listing), classes);
        Assert.Equal(2, here.Images);
        Assert.Equal(here, Sharding.Fingerprint("/scratch/job7/data/", At("/scratch/job7/data", listing), classes));
        Assert.NotEqual(here, Sharding.Fingerprint("/mnt/data", At("/mnt/data", [.. listing.Reverse()]), classes));
        Assert.NotEqual(here, Sharding.Fingerprint("/mnt/data", At("/mnt/data", listing[0], (listing[1].Item1, 0)), classes));
        Assert.NotEqual(here, Sharding.Fingerprint("/mnt/data", At("/mnt/data", listing[0], (Path.Combine("coat", "c.png"), 1)), classes));
        Assert.NotEqual(here, Sharding.Fingerprint("/mnt/data", At("/mnt/data", listing[0]), classes));
        Assert.NotEqual(here, Sharding.Fingerprint("/mnt/data", At("/mnt/data", listing), ["bag", "dress"]));
    }
}

/// <summary><see cref="Sharding.Merge"/> on feature files written by <see cref="FeatureFile.Write"/>, without a network.</summary>
public sealed class ShardingMergeTests
{
    /// <summary>Listing items 0..9, labels 0 then 1, items 2, 7 and 8 undecodable; row i holds i·10 + j in column j.</summary>
    static FeatureSet Rows(string root, int start, int end)
    {
        int[] skipped = [2, 7, 8];
        const int d = 5;
        var kept = Enumerable.Range(start, end - start).Where(i => !skipped.Contains(i)).ToArray();
        string PathOf(int i) => Path.Combine(root, $"c{(i < 5 ? 0 : 1)}", $"img{i:D2}.png");
        return new FeatureSet([.. kept.SelectMany(i => Enumerable.Range(0, d).Select(j => i * 10f + j))], kept.Length, d,
            [.. kept.Select(PathOf)], [.. kept.Select(i => i < 5 ? 0 : 1)], ["c0", "c1"], "relu7", true, new string('a', 64),
            [.. Enumerable.Range(start, end - start).Where(skipped.Contains).Select(i => new SkippedFile(PathOf(i), "truncated PNG"))],
            new ExtractionStats(kept.Length, 0, kept.Length, 0, 0, 0, 0, 0));
    }

    [Fact]
    public void MergeJoinsShardsInListingOrderAndRefusesABlockWithRowsMissing()
    {
        using var tmp = new ScratchDir("tp7-merge");
        var listing = new FeatureFile.ListingInfo(10, new string('b', 64));
        string whole = tmp["whole.npy"];
        FeatureFile.Write(whole, Rows(tmp.Path, 0, 10), listing: listing);
        var parts = new List<string>();
        for (int i = 0; i < 4; i++)
        {
            var shard = Sharding.Describe(new Shard(i, 4), 10);
            string part = tmp[$"part-{i}.npy"];
            FeatureFile.Write(part, Rows(tmp.Path, shard.Start, shard.End), listing: listing, shard: shard);
            parts.Add(part);
        }
        string merged = tmp["merged.npy"];
        var m = Sharding.Merge([parts[3], parts[1], parts[0], parts[2]], merged);
        Assert.Equal((4, 10, 7, 5, 3), (m.Shards, m.ListingSize, m.Rows, m.Dimension, m.Skipped));
        Assert.Equal(File.ReadAllBytes(whole), File.ReadAllBytes(merged));
        Assert.Equal(File.ReadAllText(FeatureFile.SidecarPath(whole)), File.ReadAllText(FeatureFile.SidecarPath(merged)));

        // Shard 1 of 4 is items 2-4 (2 undecodable): a file with a row less than that, and no skipped image for it, is refused.
        var one = Sharding.Describe(new Shard(1, 4), 10);
        var short1 = Rows(tmp.Path, 3, 5) with { Skipped = [] };
        string bad = tmp["bad/part-1.npy"];
        FeatureFile.Write(bad, short1, listing: listing, shard: one);
        string refused = tmp["refused.npy"];
        var e = Assert.Throws<InvalidDataException>(() => Sharding.Merge([parts[0], bad, parts[2], parts[3]], refused));
        Assert.Equal($"{bad}: 2 rows and 0 skipped images for the 3 images of shard 1/4", e.Message);
        Assert.False(File.Exists(refused));
    }

    [Fact]
    public void TheStreamingWriterRefusesDataOfAnotherLengthAndLeavesNothing()
    {
        using var tmp = new ScratchDir("tp7-npy-stream");
        string path = tmp["x.npy"];
        var e = Assert.Throws<InvalidDataException>(() => Tp7.Engine.IO.Npy.WriteFloat32(path, [2, 3], s => s.Write(new byte[5 * 4])));
        Assert.Equal($"{path}: shape (2, 3) of '<f4' needs 24 data bytes, 20 were written", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(tmp.Path));

        float[] data = [1, 2, 3, 4, 5, 6];
        Tp7.Engine.IO.Npy.WriteFloat32(path, [2, 3], s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));
        string whole = tmp["y.npy"];
        Tp7.Engine.IO.Npy.Write(whole, data, 2, 3);
        Assert.Equal(File.ReadAllBytes(whole), File.ReadAllBytes(path));
    }
}

/// <summary>
/// `tp7 extract --shard/--shards` and `tp7 merge` as a cluster runs them: separate processes, separate caches, the
/// scheduler's variables in the environment, and a real SIGINT/SIGTERM in the middle of an extraction.
/// </summary>
[Collection("reference")]
public sealed class ShardingCliTests(ReferenceFiles refs, ITestOutputHelper log)
{
    /// <summary>Not a scheduler's task unless a test says so, even when the tests themselves run in one.</summary>
    static readonly Dictionary<string, string?> NoScheduler = new()
    {
        ["JOB_COMPLETION_INDEX"] = null, ["SLURM_ARRAY_TASK_ID"] = null, ["SLURM_ARRAY_TASK_MIN"] = null,
        ["SLURM_ARRAY_TASK_STEP"] = null, ["SLURM_ARRAY_TASK_COUNT"] = null,
    };

    static Dictionary<string, string?> Scheduler(params (string Name, string Value)[] vars)
    {
        var env = new Dictionary<string, string?>(NoScheduler);
        foreach (var (name, value) in vars) env[name] = value;
        return env;
    }

    string[] Extract(string data, string output, params string[] more)
        => ["extract", "--data", data, "--weights", refs.Weights, "--device", "cpu", "--out", output, .. more];

    /// <summary>2 classes x 3 demo images and an undecodable file at listing position 3 (the end of class 0): 7 items.</summary>
    static string SmallDatasetWithABrokenFile(ScratchDir tmp)
    {
        string data = tmp["data"];
        var classes = DemoData.CopyClassFolders(data, 2, 3);
        File.WriteAllText(Path.Combine(data, classes[0], "zz-broken.png"), "not an image");
        return data;
    }

    [Fact]
    public void ThreeShardsMergedAreTheUnshardedExtractionByteForByte()
    {
        using var tmp = new ScratchDir("tp7-shard");
        string data = SmallDatasetWithABrokenFile(tmp);
        // VGG16 at its own 224 input: there every batch size runs the same convolution versions, so an image's
        // features do not depend on the batch it shares (at small inputs the host picks by the batch's tile count).
        // The first two shards' batches (2 images, and 1 beside the broken file) are not the unsharded run's (3 and 3), and each run has its own cache.
        string whole = tmp["whole/features.npy"];
        CliRunner.RunOk(tmp.Path, Extract(data, whole, "--batch", "4"), tmp["cache-whole"], environment: NoScheduler);
        var shardLines = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            var r = CliRunner.RunOk(tmp.Path, Extract(data, tmp["parts/part-{shard}.npy"], "--batch", "4", "--shard", $"{i}/3"), tmp["cache-shards"], environment: NoScheduler);
            shardLines.Add(r.StderrLines.Single(l => l.Contains("; shard ")));
        }
        Assert.Equal([
            $"{data}: class folders, 2 classes, 7 images (all); shard 0/3: images 0-1 of the listing",
            $"{data}: class folders, 2 classes, 7 images (all); shard 1/3: images 2-3 of the listing",
            $"{data}: class folders, 2 classes, 7 images (all); shard 2/3: images 4-6 of the listing"], shardLines);
        string[] parts = [.. Enumerable.Range(0, 3).Select(i => tmp[$"parts/part-{i}.npy"])];
        var middle = FeatureFile.ReadSidecar(parts[1]);
        Assert.Equal(new FeatureFile.ShardInfo(1, 3, 2, 4), middle.Shard);
        Assert.Equal((1, 1), (middle.Paths.Count, middle.Skipped.Count));   // the broken file is in shard 1

        string merged = tmp["merged/all.npy"];
        var m = CliRunner.RunOk(tmp.Path, ["merge", parts[2], parts[0], parts[1], "--out", merged]);
        Assert.Equal($"merged 3 shards of 7 images: wrote {merged}: 6 x 4096 (relu7, L2-normalised), 1 skipped, and {tmp["merged/all.json"]}", m.Stdout.Trim());
        Assert.Equal(File.ReadAllBytes(whole), File.ReadAllBytes(merged));
        Assert.Equal(File.ReadAllText(FeatureFile.SidecarPath(whole)), File.ReadAllText(FeatureFile.SidecarPath(merged)));

        // Every refusal is one line naming the shard or the files, and writes nothing.
        string Refused(params string[] shards)
        {
            string o = tmp["refused.npy"];
            var r = CliRunner.Run(tmp.Path, ["merge", .. shards, "--out", o]);
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.False(File.Exists(o), $"{o} written by a refused merge");
            return Assert.Single(r.StderrLines);
        }
        Assert.Equal("tp7 merge: shard 1/3 (images 2-3 of the listing) is missing", Refused(parts[0], parts[2]));
        Assert.Equal("tp7 merge: shards 0/3 (images 0-1 of the listing), 2/3 (images 4-6 of the listing) are missing", Refused(parts[1]));
        string copy = tmp["elsewhere/part-1-again.npy"];
        CopyShard(parts[1], copy);
        Assert.Equal($"tp7 merge: shard 1/3 given twice: {parts[1]}, {copy}", Refused(parts[0], parts[1], parts[2], copy));

        string otherWeights = tmp["other/weights.npy"];
        CopyShard(parts[1], otherWeights, side => side["weights_sha256"] = "0123456789abcdef" + new string('0', 48));
        Assert.Equal($"tp7 merge: {parts[0]} and {otherWeights} differ in weights ({middle.WeightsSha256[..12]} vs 0123456789ab): they are not shards of one extraction",
            Refused(parts[0], otherWeights, parts[2]));
        string otherLayer = tmp["other/layer.npy"];
        CopyShard(parts[1], otherLayer, side => side["layer"] = "fc7");
        Assert.Equal($"tp7 merge: {parts[0]} and {otherLayer} differ in layer (relu7 vs fc7): they are not shards of one extraction", Refused(parts[0], otherLayer, parts[2]));
        string otherListing = tmp["other/listing.npy"];
        CopyShard(parts[1], otherListing, side => side["listing"]!["sha256"] = "feedface" + new string('0', 56));
        Assert.Equal($"tp7 merge: {parts[0]} and {otherListing} differ in listing (7 images, sha256 {middle.Listing!.Sha256[..12]} vs 7 images, sha256 feedface0000): they are not shards of one extraction",
            Refused(parts[0], otherListing, parts[2]));
        Assert.Equal($"tp7 merge: {whole}: not a shard (its sidecar records no shard; write shards with 'tp7 extract --shard INDEX/COUNT')", Refused(whole, parts[1]));
        Assert.Equal($"tp7 merge: {parts[0]} is both a shard and the output; write the merged features to another file",
            Assert.Single(CliRunner.Run(tmp.Path, ["merge", parts[0], parts[1], parts[2], "--out", parts[0]]).StderrLines));
    }

    static void CopyShard(string npy, string to, Action<JsonNode>? edit = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(to)!);
        File.Copy(npy, to);
        var side = JsonNode.Parse(File.ReadAllText(FeatureFile.SidecarPath(npy)))!;
        edit?.Invoke(side);
        File.WriteAllText(FeatureFile.SidecarPath(to), side.ToJsonString());
    }

    [Fact]
    public void KubernetesAndSlurmVariablesPickTheShard()
    {
        using var tmp = new ScratchDir("tp7-shard-env");
        string data = SmallDatasetWithABrokenFile(tmp);
        var listing = DatasetLoader.Open(data).Train;
        // The command line every pod of an Indexed Job, or every task of an array, shares.
        string[] Shared(string dir) => Extract(data, Path.Combine(dir, "part-{shard}.npy"), "--size", "32", "--batch", "2", "--shards", "3");

        CliRunner.RunOk(tmp.Path, Shared(tmp["k8s"]), tmp["cache"], environment: Scheduler(("JOB_COMPLETION_INDEX", "2")));
        var k8s = FeatureFile.ReadSidecar(tmp["k8s/part-2.npy"]);
        Assert.Equal(new FeatureFile.ShardInfo(2, 3, 4, 7), k8s.Shard);
        Assert.Equal(listing.Skip(4).Select(i => i.Path), k8s.Paths);

        // #SBATCH --array=1-3: task 2 is the second shard.
        CliRunner.RunOk(tmp.Path, Shared(tmp["slurm"]), tmp["cache"],
            environment: Scheduler(("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")));
        var slurm = FeatureFile.ReadSidecar(tmp["slurm/part-1.npy"]);
        Assert.Equal(new FeatureFile.ShardInfo(1, 3, 2, 4), slurm.Shard);
        Assert.Equal([listing[2].Path], slurm.Paths);
        Assert.Equal([new FeatureFile.SkippedInfo(listing[3].Path, "not an image (text file)")], slurm.Skipped);
        Assert.Equal(k8s.Listing, slurm.Listing);
    }

    [Fact]
    public void EveryExtractOptionIsCheckedBeforeAnyWork()
    {
        using var tmp = new ScratchDir("tp7-shard-checks");
        string data = SmallDatasetWithABrokenFile(tmp);
        File.WriteAllText(tmp["a-file"], "");
        string output = tmp["out/f.npy"];
        void Refused(int exit, string line, string[] more, Dictionary<string, string?>? env = null, string? outPath = null)
        {
            var r = CliRunner.Run(tmp.Path, Extract(data, outPath ?? output, more), tmp["cache"], environment: env ?? NoScheduler);
            Assert.True(r.ExitCode == exit, r.ToString());
            // One line (parse errors add the pointer to --help), before the weights or the device are opened.
            Assert.Equal(line, r.StderrLines[0]);
            Assert.Equal(exit == 2 ? 2 : 1, r.StderrLines.Length);
            Assert.False(Directory.Exists(tmp["cache"]), "a refused extract opened the feature cache");
        }
        Refused(2, "tp7 extract: --batch must be at least 1, got 0", ["--batch", "0"]);
        Refused(2, "tp7 extract: --shard: '3/3': the index of a shard of 3 runs from 0 to 2", ["--shard", "3/3"]);
        Refused(2, "tp7 extract: --shard: 'one/3' is not a shard: write INDEX/COUNT, e.g. 0/4 for the first of four", ["--shard", "one/3"]);
        Refused(2, "tp7 extract: --shards must be at least 1, got 0", ["--shards", "0"]);
        Refused(2, $"tp7 extract: --out: {tmp["a-file/f.npy"]}: {tmp["a-file"]} is a file, not a folder", [], outPath: tmp["a-file/f.npy"]);
        Refused(1, "tp7 extract: --shard 1/3 and --shards 3: give one (--shard for an explicit shard, --shards to read it from the scheduler's environment)",
            ["--shard", "1/3", "--shards", "3"]);
        Refused(1, "tp7 extract: --shards 3 takes this task's shard from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID (a Slurm job array), " +
                   "and neither is set: outside a scheduler give --shard INDEX/3", ["--shards", "3"]);
        Refused(1, "tp7 extract: JOB_COMPLETION_INDEX=5 is outside 0..2 for --shards 3: the Job's completions must equal the shard count", ["--shards", "3"],
            Scheduler(("JOB_COMPLETION_INDEX", "5")));
        Refused(1, "tp7 extract: SLURM_ARRAY_TASK_COUNT=4 but --shards 3: the array must have as many tasks as there are shards (#SBATCH --array=0-2; to rerun some of them alone, give each --shard INDEX/3)", ["--shards", "3"],
            Scheduler(("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "4")));
        Refused(1, $"tp7 extract: --out {tmp["out/f-{shard}.npy"]}: {{shard}} is replaced by the shard's index, but neither --shard nor --shards is given",
            [], outPath: tmp["out/f-{shard}.npy"]);
        Assert.False(Directory.Exists(tmp["out"]));

        // A layer the model lacks fails before the weights reach a device (after the listing's summary line).
        var layer = CliRunner.Run(tmp.Path, Extract(data, output, "--layer", "relu9"), tmp["cache"], environment: NoScheduler);
        Assert.True(layer.ExitCode == 1, layer.ToString());
        Assert.StartsWith("tp7 extract: --layer: 'relu9' is not a layer of the model; taps: conv1_1,", layer.StderrLines[^1]);
        Assert.DoesNotContain(layer.StderrLines, l => l.StartsWith("device:"));
        Assert.False(Directory.Exists(tmp["cache"]), "a refused extract opened the feature cache");
    }

    [Fact]
    public void AnInterruptedExtractSaysHowManyAreCachedAndTheSameCommandResumes()
    {
        using var tmp = new ScratchDir("tp7-shard-interrupt");
        string data = tmp["data"];
        DemoData.CopyClassFolders(data, 3, 10);
        const int n = 30;
        string cache = tmp["cache"], output = tmp["out/f.npy"];
        // Batch 1: a batch's features reach the cache before its progress line, so a signal finds them all counted.
        // 64x64 (about 4x the work of 32x32): the run must still be going when the test, on a loaded machine, reacts.
        string[] args = Extract(data, output, "--size", "64", "--batch", "1");
        var progressLine = new Regex(@"^features\s+\[[#.]+\]\s+(\d+)/30\b");
        int CachedFiles() => Directory.Exists(Path.Combine(cache, "features"))
            ? Directory.EnumerateFiles(Path.Combine(cache, "features"), "*.f32", SearchOption.AllDirectories).Count() : 0;

        int Interrupt(int signal, string name, int exitCode, int before)
        {
            using var run = CliRunner.Start(tmp.Path, args, cache, NoScheduler);
            // The first progress line past what the cache held: the network is computing.
            run.WaitForStderrLine(l => progressLine.Match(l) is { Success: true } m && int.Parse(m.Groups[1].Value) > before, TimeSpan.FromMinutes(3));
            run.Signal(signal);
            var r = run.WaitForExit(TimeSpan.FromMinutes(2));
            log.WriteLine(r.ToString());
            Assert.True(r.ExitCode == exitCode, r.ToString());
            var said = Regex.Match(r.Stderr, $@"(?m)^tp7 extract: interrupted \({name}\) after (\d+) of 30 images; their features are cached in (.+): run the same command again to resume\r?$");
            Assert.True(said.Success, r.ToString());
            Assert.Equal(Path.Combine(cache, "features"), said.Groups[2].Value);
            int kept = int.Parse(said.Groups[1].Value);
            Assert.InRange(kept, before + 1, n - 1);
            Assert.Equal(kept, CachedFiles());
            Assert.False(File.Exists(output), "an interrupted extract wrote its output");
            return kept;
        }

        int first = Interrupt(2, "SIGINT", 130, 0);
        int second = Interrupt(15, "SIGTERM", 143, first);
        var done = CliRunner.RunOk(tmp.Path, args, cache, environment: NoScheduler);
        Assert.Matches($@"(?m)^{n - second} computed \(.*, {second} from cache, .*, 0 skipped", done.Stdout);
        Assert.Equal(n, FeatureFile.Read(output).N);
        log.WriteLine($"interrupted after {first}, then {second} of {n}; the third run computed {n - second}");
    }
}
