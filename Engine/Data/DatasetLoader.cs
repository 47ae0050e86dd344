namespace Tp7.Engine.Data;

/// <summary>
/// Finds a labelled image dataset on disk. Layouts:
/// (a) DIR/CLASS/… images: everything is Train, unless trainPerClass is given;
/// (b) DIR/train/CLASS and DIR/test/CLASS (also training/testing, any case), or two folders given apart;
/// (c) layout (a) split per class: trainPerClass random training images, the rest for testing
///     (the 15-Scene protocol: 100 per class). The split depends only on the seed, the class name and
///     the ordinally sorted paths, never on the file system's listing order.
/// Images are the files with extensions jpg, jpeg, png, bmp, gif, tif, tiff, webp (any case), found
/// recursively inside a class folder; names starting with '.' (hidden files, macOS "._" shadows) are ignored.
/// Class names are folder names, or 15-Scene's normalised names (<see cref="FifteenScene"/>); class
/// indices follow their ordinal sort.
/// </summary>
public static class DatasetLoader
{
    public static IReadOnlySet<string> ImageExtensions { get; } =
        new HashSet<string>([".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"], StringComparer.OrdinalIgnoreCase);

    private static readonly string[] TrainNames = ["train", "training"];
    private static readonly string[] TestNames = ["test", "testing"];

    public static Dataset Open(string dir, int? trainPerClass = null, int seed = 0)
    {
        string root = Path.GetFullPath(dir);
        if (!Directory.Exists(root))
            throw new DirectoryNotFoundException($"{dir}: no such folder");
        if (trainPerClass is <= 0)
            throw new ArgumentException($"--train-per-class must be at least 1, got {trainPerClass}");

        var subdirs = VisibleSubdirectories(root);
        string? trainDir = subdirs.FirstOrDefault(d => TrainNames.Contains(Path.GetFileName(d), StringComparer.OrdinalIgnoreCase));
        string? testDir = subdirs.FirstOrDefault(d => TestNames.Contains(Path.GetFileName(d), StringComparer.OrdinalIgnoreCase));
        if (trainDir is not null && testDir is not null)
        {
            if (trainPerClass is not null)
                throw new ArgumentException($"{dir}: already split into {Path.GetFileName(trainDir)}/ and {Path.GetFileName(testDir)}/; --train-per-class splits a single folder of class folders");
            return OpenSplit(root, trainDir, testDir);
        }

        var scan = ScanClasses(root);
        if (trainPerClass is null)
        {
            return new Dataset
            {
                Root = root,
                Layout = "class folders",
                Classes = scan.Classes,
                Train = scan.Items,
                Test = [],
                FifteenScene = scan.FifteenScene,
                EmptyClassFolders = scan.EmptyFolders,
                IgnoredFiles = scan.IgnoredFiles,
            };
        }

        var (train, test) = Split(root, scan, trainPerClass.Value, seed);
        return new Dataset
        {
            Root = root,
            Layout = $"class folders, split {trainPerClass} per class (seed {seed})",
            Classes = scan.Classes,
            Train = train,
            Test = test,
            FifteenScene = scan.FifteenScene,
            EmptyClassFolders = scan.EmptyFolders,
            IgnoredFiles = scan.IgnoredFiles,
        };
    }

    /// <summary>Layout (b) with the two folders given apart; both must hold the same classes.</summary>
    public static Dataset Open(string trainDir, string testDir)
    {
        foreach (string d in new[] { trainDir, testDir })
            if (!Directory.Exists(d)) throw new DirectoryNotFoundException($"{d}: no such folder");
        string trainRoot = Path.GetFullPath(trainDir);
        return OpenSplit(Path.GetDirectoryName(trainRoot) ?? trainRoot, trainRoot, Path.GetFullPath(testDir));
    }

    private static Dataset OpenSplit(string root, string trainDir, string testDir)
    {
        var train = ScanClasses(trainDir);
        var test = ScanClasses(testDir);
        if (!train.Classes.SequenceEqual(test.Classes, StringComparer.Ordinal))
        {
            var onlyTrain = train.Classes.Except(test.Classes, StringComparer.Ordinal).ToList();
            var onlyTest = test.Classes.Except(train.Classes, StringComparer.Ordinal).ToList();
            throw new InvalidDataException(
                $"{trainDir} and {testDir}: train and test have different classes: " +
                $"only in train: {List(onlyTrain)}; only in test: {List(onlyTest)}");
        }
        return new Dataset
        {
            Root = root,
            Layout = $"train/test folders ({Path.GetFileName(trainDir)}/, {Path.GetFileName(testDir)}/)",
            Classes = train.Classes,
            Train = train.Items,
            Test = test.Items,
            FifteenScene = train.FifteenScene && test.FifteenScene,
            EmptyClassFolders = [.. train.EmptyFolders, .. test.EmptyFolders],
            IgnoredFiles = train.IgnoredFiles + test.IgnoredFiles,
        };
    }

    private static string List(List<string> names) => names.Count == 0 ? "(none)" : string.Join(", ", names);

    private sealed record ClassScan(
        string[] Classes, DatasetItem[] Items, bool FifteenScene, string[] EmptyFolders, int IgnoredFiles);

    private static ClassScan ScanClasses(string dir)
    {
        var folders = VisibleSubdirectories(dir);
        if (folders.Count == 0)
        {
            int loose = Directory.EnumerateFiles(dir).Count(IsImagePath);
            throw new InvalidDataException(loose > 0
                ? $"{dir}: no class folders found (it holds {loose} images directly; put them in one folder per class)"
                : $"{dir}: no class folders found");
        }

        var folderNames = folders.Select(f => Path.GetFileName(f)!).ToList();
        string[]? fifteen = FifteenScene.Normalize(folderNames);
        string[] display = fifteen ?? [.. folderNames];

        var byName = new Dictionary<string, string>(StringComparer.Ordinal);
        var files = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var empty = new List<string>();
        int ignored = 0;
        for (int i = 0; i < folders.Count; i++)
        {
            if (byName.TryGetValue(display[i], out string? other))
                throw new InvalidDataException($"{dir}: folders '{Path.GetFileName(other)}' and '{folderNames[i]}' both name class '{display[i]}'");
            byName[display[i]] = folders[i];
            var (images, nonImages) = ImagesUnder(folders[i]);
            ignored += nonImages;
            if (images.Count == 0) empty.Add(folders[i]);
            else files[display[i]] = images;
        }
        if (files.Count == 0)
            throw new InvalidDataException($"{dir}: no images in any of its {folders.Count} class folders (extensions: {string.Join(' ', ImageExtensions)})");

        string[] classes = [.. files.Keys.Order(StringComparer.Ordinal)];
        var items = new List<DatasetItem>();
        for (int label = 0; label < classes.Length; label++)
            items.AddRange(files[classes[label]].Select(p => new DatasetItem(p, label)));
        return new ClassScan(classes, [.. items], fifteen is not null, [.. empty.Order(StringComparer.Ordinal)], ignored);
    }

    /// <summary>Per class, a seeded partial Fisher–Yates shuffle of the ordinally sorted paths picks
    /// the training images. The generator is seeded from (seed, class name), so adding or removing a
    /// class leaves every other class's split unchanged.</summary>
    private static (DatasetItem[] Train, DatasetItem[] Test) Split(string root, ClassScan scan, int trainPerClass, int seed)
    {
        var train = new List<DatasetItem>();
        var test = new List<DatasetItem>();
        for (int label = 0; label < scan.Classes.Length; label++)
        {
            var items = scan.Items.Where(i => i.Label == label).ToArray();   // already path-sorted
            if (items.Length <= trainPerClass)
                throw new InvalidDataException(
                    $"{root}: class '{scan.Classes[label]}' has {items.Length} images; splitting {trainPerClass} per class for training needs more, to leave test images");
            var rng = new SplitMix64(((ulong)(uint)seed << 32) ^ Fnv1a(scan.Classes[label]));
            for (int i = 0; i < trainPerClass; i++)
            {
                int j = i + (int)rng.NextBelow((ulong)(items.Length - i));
                (items[i], items[j]) = (items[j], items[i]);
            }
            train.AddRange(items.Take(trainPerClass).OrderBy(i => i.Path, StringComparer.Ordinal));
            test.AddRange(items.Skip(trainPerClass).OrderBy(i => i.Path, StringComparer.Ordinal));
        }
        return ([.. train], [.. test]);
    }

    private static List<string> VisibleSubdirectories(string dir) =>
        [.. Directory.EnumerateDirectories(dir)
            .Where(d => !Path.GetFileName(d).StartsWith('.'))
            .Order(StringComparer.Ordinal)];

    private static (List<string> Images, int NonImages) ImagesUnder(string classDir)
    {
        var options = new EnumerationOptions
        {
            RecurseSubdirectories = true,
            IgnoreInaccessible = true,
            AttributesToSkip = FileAttributes.Hidden | FileAttributes.System,
        };
        var images = new List<string>();
        int other = 0;
        foreach (string path in Directory.EnumerateFiles(classDir, "*", options))
        {
            // Dot-names anywhere below the class folder are hidden on Unix even where the attribute is not set.
            string relative = Path.GetRelativePath(classDir, path);
            if (relative.Split(Path.DirectorySeparatorChar).Any(part => part.StartsWith('.'))) continue;
            if (IsImagePath(path)) images.Add(path);
            else other++;
        }
        images.Sort(StringComparer.Ordinal);
        return (images, other);
    }

    private static bool IsImagePath(string path) =>
        ImageExtensions.Contains(Path.GetExtension(path)) && !Path.GetFileName(path).StartsWith('.');

    private static ulong Fnv1a(string s)
    {
        ulong h = 14695981039346656037;
        foreach (byte b in System.Text.Encoding.UTF8.GetBytes(s))
        {
            h ^= b;
            h *= 1099511628211;
        }
        return h;
    }

    /// <summary>SplitMix64 (Steele, Lea, Flood, OOPSLA 2014): a fixed, documented generator, so a seed
    /// gives the same split on every .NET version (System.Random's algorithm is not a contract).</summary>
    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        public ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            return z ^ (z >> 31);
        }

        /// <summary>Uniform in [0, n) without modulo bias (Lemire's rejection on the 128-bit product).</summary>
        public ulong NextBelow(ulong n)
        {
            ulong threshold = (0 - n) % n;
            while (true)
            {
                ulong high = Math.BigMul(Next(), n, out ulong low);
                if (low >= threshold) return high;
            }
        }
    }
}
