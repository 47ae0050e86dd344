namespace Tp7.Engine.Data;

/// <summary>One image file and its class index into <see cref="Dataset.Classes"/>.</summary>
public sealed record DatasetItem(string Path, int Label);

/// <summary>A file left out of a run, with the reason in a few words ("truncated JPEG").</summary>
public sealed record SkippedFile(string Path, string Reason);

/// <summary>
/// A labelled image collection split into train and test. Classes are display names in ordinal
/// order; a label is an index into <see cref="Classes"/>. Train and Test list items class by class,
/// paths in ordinal order within a class, so the same folder gives the same lists on every machine.
/// </summary>
public sealed class Dataset
{
    public required string Root { get; init; }

    /// <summary>"class folders", "train/test folders", or "class folders, split N per class (seed S)".</summary>
    public required string Layout { get; init; }

    public required IReadOnlyList<string> Classes { get; init; }
    public required IReadOnlyList<DatasetItem> Train { get; init; }
    public required IReadOnlyList<DatasetItem> Test { get; init; }

    /// <summary>True when the folders were recognised as 15-Scene and renamed to its normalised names.</summary>
    public bool FifteenScene { get; init; }

    /// <summary>Class folders holding no image; they are not classes.</summary>
    public IReadOnlyList<string> EmptyClassFolders { get; init; } = [];

    /// <summary>Non-image files found in class folders (not hidden ones), ignored.</summary>
    public int IgnoredFiles { get; init; }

    public int TrainCount(int label) => Train.Count(i => i.Label == label);
    public int TestCount(int label) => Test.Count(i => i.Label == label);
}
