using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Tp7.Engine.Data;
using Tp7.Engine.Imaging;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>Dataset layouts, the seeded split, 15-Scene names, and the parallel batch loader on hostile files.</summary>
public sealed class DatasetTests(ITestOutputHelper log) : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("tp7-data-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>A tiny PNG whose pixels encode <paramref name="tag"/>, so two files never decode alike.</summary>
    private static void WritePng(string path, int tag, int width = 6, int height = 5)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var image = new Image<Rgb24>(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                image[x, y] = new Rgb24((byte)(tag * 37 + x), (byte)(tag * 11 + y), (byte)(tag >> 3));
        image.SaveAsPng(path);
    }

    private string MakeClasses(string dir, IEnumerable<string> classes, int perClass, string ext = ".png")
    {
        int tag = 0;
        foreach (string c in classes)
            for (int i = 0; i < perClass; i++)
                WritePng(Path.Combine(dir, c, $"img_{i:D3}{ext}"), tag++);
        return dir;
    }

    private static string Rel(Dataset d, DatasetItem i) => Path.GetRelativePath(d.Root, i.Path);

    [Fact]
    public void ClassFoldersGiveSortedClassesAndSkipHiddenAndNonImages()
    {
        string dir = Path.Combine(_root, "plain");
        WritePng(Path.Combine(dir, "zebra", "1.png"), 1);
        WritePng(Path.Combine(dir, "zebra", "2.JPG.png"), 2);
        WritePng(Path.Combine(dir, "Apple", "x.PNG"), 3);
        WritePng(Path.Combine(dir, "Apple", "nested", "deeper.png"), 4);
        WritePng(Path.Combine(dir, "Apple", ".hidden.png"), 5);
        WritePng(Path.Combine(dir, "Apple", ".cache", "thumb.png"), 6);
        WritePng(Path.Combine(dir, ".git", "objects.png"), 7);
        File.WriteAllText(Path.Combine(dir, "Apple", "readme.txt"), "not an image");
        Directory.CreateDirectory(Path.Combine(dir, "empty"));

        var d = DatasetLoader.Open(dir);
        Assert.Equal(["Apple", "zebra"], d.Classes);   // ordinal: upper case first
        Assert.Equal("class folders", d.Layout);
        Assert.False(d.FifteenScene);
        Assert.Empty(d.Test);
        Assert.Equal(
            [("Apple/nested/deeper.png", 0), ("Apple/x.PNG", 0), ("zebra/1.png", 1), ("zebra/2.JPG.png", 1)],
            d.Train.Select(i => (Rel(d, i).Replace('\\', '/'), i.Label)));
        Assert.Equal([Path.Combine(d.Root, "empty")], d.EmptyClassFolders);
        Assert.Equal(1, d.IgnoredFiles);
    }

    [Theory]
    [InlineData("train", "test")]
    [InlineData("Training", "TESTING")]
    public void TrainTestFoldersAreFound(string train, string test)
    {
        string dir = Path.Combine(_root, "split-" + train);
        MakeClasses(Path.Combine(dir, train), ["cat", "dog"], 3);
        MakeClasses(Path.Combine(dir, test), ["cat", "dog"], 2);

        var d = DatasetLoader.Open(dir);
        Assert.StartsWith("train/test folders", d.Layout);
        Assert.Equal(["cat", "dog"], d.Classes);
        Assert.Equal([0, 0, 0, 1, 1, 1], d.Train.Select(i => i.Label));
        Assert.Equal([0, 0, 1, 1], d.Test.Select(i => i.Label));
        Assert.All(d.Train, i => Assert.StartsWith(Path.Combine(d.Root, train), i.Path));
        Assert.All(d.Test, i => Assert.StartsWith(Path.Combine(d.Root, test), i.Path));

        var apart = DatasetLoader.Open(Path.Combine(dir, train), Path.Combine(dir, test));
        Assert.Equal(d.Train, apart.Train);
        Assert.Equal(d.Test, apart.Test);

        var e = Assert.Throws<ArgumentException>(() => DatasetLoader.Open(dir, trainPerClass: 1));
        Assert.Contains("already split", e.Message);
    }

    [Fact]
    public void DifferentClassesInTrainAndTestAreAnError()
    {
        string dir = Path.Combine(_root, "mismatch");
        MakeClasses(Path.Combine(dir, "train"), ["cat", "dog", "owl"], 1);
        MakeClasses(Path.Combine(dir, "test"), ["cat", "dog", "eel"], 1);
        var e = Assert.Throws<InvalidDataException>(() => DatasetLoader.Open(dir));
        Assert.Contains("train and test have different classes: only in train: owl; only in test: eel", e.Message);
    }

    [Fact]
    public void ClearErrorsForUnusableFolders()
    {
        string loose = Path.Combine(_root, "loose");
        WritePng(Path.Combine(loose, "a.png"), 1);
        var e = Assert.Throws<InvalidDataException>(() => DatasetLoader.Open(loose));
        Assert.Equal($"{loose}: no class folders found (it holds 1 images directly; put them in one folder per class)", e.Message);

        string few = MakeClasses(Path.Combine(_root, "few"), ["a", "b"], 3);
        e = Assert.Throws<InvalidDataException>(() => DatasetLoader.Open(few, trainPerClass: 3));
        Assert.Contains("class 'a' has 3 images", e.Message);

        string dup = Path.Combine(_root, "dup");
        MakeClasses(dup, ["Coast", "MITcoast"], 1);
        e = Assert.Throws<InvalidDataException>(() => DatasetLoader.Open(dup));
        Assert.Contains("folders 'Coast' and 'MITcoast' both name class 'coast'", e.Message);

        Assert.Throws<DirectoryNotFoundException>(() => DatasetLoader.Open(Path.Combine(_root, "nope")));
    }

    [Fact]
    public void SplitIsDeterministicPerSeedAndIndependentOfListingOrder()
    {
        string a = MakeClasses(Path.Combine(_root, "split-a"), ["c0", "c1", "c2"], 12);
        var s1 = DatasetLoader.Open(a, trainPerClass: 5, seed: 7);
        var s2 = DatasetLoader.Open(a, trainPerClass: 5, seed: 7);
        var s3 = DatasetLoader.Open(a, trainPerClass: 5, seed: 8);

        Assert.Equal("class folders, split 5 per class (seed 7)", s1.Layout);
        Assert.Equal(s1.Train, s2.Train);
        Assert.Equal(s1.Test, s2.Test);
        Assert.NotEqual(s1.Train.Select(i => i.Path), s3.Train.Select(i => i.Path));
        for (int c = 0; c < 3; c++)
        {
            Assert.Equal(5, s1.TrainCount(c));
            Assert.Equal(7, s1.TestCount(c));
        }
        Assert.Empty(s1.Train.Select(i => i.Path).Intersect(s1.Test.Select(i => i.Path)));
        Assert.Equal(36, s1.Train.Concat(s1.Test).Select(i => i.Path).Distinct().Count());

        // Same names created in reverse order (a different directory listing order) and with an extra
        // class: every shared class keeps its split.
        string b = Path.Combine(_root, "split-b");
        foreach (string c in new[] { "c2", "c1", "c0", "c_extra" })
            for (int i = 11; i >= 0; i--)
                WritePng(Path.Combine(b, c, $"img_{i:D3}.png"), i);
        var r = DatasetLoader.Open(b, trainPerClass: 5, seed: 7);
        Assert.Equal(
            s1.Train.Select(i => Rel(s1, i)),
            r.Train.Where(i => r.Classes[i.Label] != "c_extra").Select(i => Rel(r, i)));
    }

    public static readonly string[] Archive =
    [
        "bedroom", "CALsuburb", "industrial", "kitchen", "livingroom", "MITcoast", "MITforest", "MIThighway",
        "MITinsidecity", "MITmountain", "MITopencountry", "MITstreet", "MITtallbuilding", "PARoffice", "store",
    ];

    public static readonly string[] Course =
    [
        "Bedroom", "Suburb", "Industrial", "Kitchen", "LivingRoom", "Coast", "Forest", "Highway",
        "InsideCity", "Mountain", "OpenCountry", "Street", "TallBuilding", "Office", "Store",
    ];

    [Fact]
    public void FifteenSceneLayoutsGiveTheSameClasses()
    {
        string[] numbered = [.. Enumerable.Range(0, 15).Select(i => i.ToString("D2"))];
        string[] expected =
        [
            "bedroom", "coast", "forest", "highway", "industrial", "insidecity", "kitchen", "livingroom",
            "mountain", "office", "opencountry", "store", "street", "suburb", "tallbuilding",
        ];
        foreach (var (name, folders) in new[] { ("archive", Archive), ("course", Course), ("numbered", numbered) })
        {
            string dir = MakeClasses(Path.Combine(_root, "15scene-" + name), folders, 2);
            var d = DatasetLoader.Open(dir, trainPerClass: 1, seed: 0);
            Assert.True(d.FifteenScene, name);
            Assert.Equal(expected, d.Classes);
            // Folder k of every layout is the k-th class of the archive order.
            for (int k = 0; k < 15; k++)
            {
                int label = d.Train.Concat(d.Test).Single(i => i.Path.Contains(Path.DirectorySeparatorChar + folders[k] + Path.DirectorySeparatorChar)
                                                           && i.Path.EndsWith("img_000.png")).Label;
                Assert.Equal(FifteenScene.ArchiveOrder[k], d.Classes[label]);
            }
        }

        // Fewer than 15 numbered folders are not 15-Scene: the names stay.
        string digits = MakeClasses(Path.Combine(_root, "digits"), ["00", "01", "02"], 1);
        Assert.Equal(["00", "01", "02"], DatasetLoader.Open(digits).Classes);
    }

    [Fact]
    public void BatchLoaderKeepsInputOrderAndMatchesSingleImageLoading()
    {
        string dir = MakeClasses(Path.Combine(_root, "batches"), ["a", "b", "c"], 7);
        var d = DatasetLoader.Open(dir);
        var p = Preprocessing.ImageNet with { Size = 32 };
        var loader = new BatchLoader(d.Train, p, batchSize: 5, workers: 3, prefetch: 1);
        var seen = new List<DatasetItem>();
        foreach (var batch in loader.ReadBatches())
        {
            using (batch)
            {
                Assert.Equal(batch.Count * p.TensorLength, batch.Data.Length);
                for (int k = 0; k < batch.Count; k++)
                    Assert.Equal(ImageLoader.LoadTensor(batch.Items[k].Path, p), batch.Data.AsSpan(k * p.TensorLength, p.TensorLength).ToArray());
                seen.AddRange(batch.Items);
            }
        }
        Assert.Equal(d.Train, seen);
        Assert.Equal(5, loader.BatchCount);
        var stats = loader.Stats;
        Assert.Equal(21, stats.Decoded);
        Assert.Equal(0, stats.Skipped);
        Assert.True(stats.ImagesPerSecond > 0 && stats.ImagesPerWorkerSecond > 0);

        // Stopping early returns promptly and leaves no worker behind.
        var early = new BatchLoader(d.Train, p, batchSize: 2, workers: 2, prefetch: 1);
        Assert.Equal(2, early.ReadBatches().Take(1).Single().Count);
    }

    [Fact]
    public void HostileDatasetRunsToCompletionAndNamesEverySkippedFile()
    {
        string dir = Path.Combine(_root, "hostile");
        string manifest = PythonTools.Run("make_hostile_dataset.py", dir);
        var lines = manifest.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')).ToList();
        var good = lines.Where(l => l[0] == "good").Select(l => Path.GetFullPath(l[1])).ToList();
        var bad = lines.Where(l => l[0] == "bad").ToDictionary(l => Path.GetFullPath(l[1]), l => l[2]);

        var d = DatasetLoader.Open(dir);
        Assert.Equal(["cats", "dogs"], d.Classes);
        Assert.Equal(1, d.IgnoredFiles);   // notes.txt; .hidden.jpg is not even counted
        Assert.Equal(good.Concat(bad.Keys).Order(StringComparer.Ordinal), d.Train.Select(i => i.Path));

        var p = Preprocessing.ImageNet;
        var loader = new BatchLoader(d.Train, p, batchSize: 4, workers: 2);
        var loaded = new List<DatasetItem>();
        foreach (var batch in loader.ReadBatches())
        {
            for (int k = 0; k < batch.Count; k++)
                Assert.Equal(ImageLoader.LoadTensor(batch.Items[k].Path, p), batch.Data.AsSpan(k * p.TensorLength, p.TensorLength).ToArray());
            loaded.AddRange(batch.Items);
            batch.Dispose();
        }

        Assert.Equal(good.Order(StringComparer.Ordinal), loaded.Select(i => i.Path));
        Assert.Equal(bad.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new SkippedFile(kv.Key, kv.Value)), loader.Skipped);
        var stats = loader.Stats;
        Assert.Equal((good.Count, bad.Count), (stats.Decoded, stats.Skipped));
        foreach (var s in loader.Skipped) log.WriteLine($"skipped {Path.GetFileName(s.Path)}: {s.Reason}");
        log.WriteLine($"decoded {stats.Decoded} in {stats.WallSeconds:F2} s: {stats.ImagesPerSecond:F0} images/s, {stats.ImagesPerWorkerSecond:F0} per worker-second (2 workers, shared 2-core machine)");

        // A tight pixel budget skips the larger good images too, by name, and keeps the rest.
        var tight = new BatchLoader(d.Train, p with { MaxPixels = 8_000 }, batchSize: 4, workers: 2);
        int kept = tight.ReadBatches().Sum(b => b.Count);
        Assert.Contains(tight.Skipped, s => s.Path.EndsWith("a_photo.jpg") && s.Reason == "160x107 exceeds the 0.008 Mpx limit");
        Assert.Equal(good.Count + bad.Count, kept + tight.Skipped.Count);
        Assert.InRange(kept, 1, good.Count - 1);
    }
}
