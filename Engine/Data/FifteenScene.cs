namespace Tp7.Engine.Data;

/// <summary>
/// Class names of the 15-Scene dataset (Lazebnik, Schmid, Ponce, CVPR 2006) across its published layouts.
/// </summary>
/// <remarks>
/// Three layouts circulate: the original archive (bedroom, CALsuburb, …, MITcoast, …, PARoffice, store),
/// course copies with capitalised names (Bedroom, Coast, InsideCity, LivingRoom, Office, Suburb, …) and
/// numbered folders 00–14. All of them map to one display form: lower case, one word, no source prefix
/// (MIT = Oliva and Torralba's eight scenes, CAL = Caltech suburb, PAR = Fei-Fei and Perona's office).
/// Numbered folders follow the order of the original archive's folder listing, <see cref="ArchiveOrder"/>:
/// 00 bedroom, 01 suburb, 02 industrial, 03 kitchen, 04 livingroom, 05 coast, 06 forest, 07 highway,
/// 08 insidecity, 09 mountain, 10 opencountry, 11 street, 12 tallbuilding, 13 office, 14 store.
/// Class indices are not this order: like every dataset here, they follow the ordinal sort of display names.
/// </remarks>
public static class FifteenScene
{
    /// <summary>Display names in the original archive's folder order (the meaning of folders 00–14).</summary>
    public static IReadOnlyList<string> ArchiveOrder { get; } =
    [
        "bedroom", "suburb", "industrial", "kitchen", "livingroom", "coast", "forest", "highway",
        "insidecity", "mountain", "opencountry", "street", "tallbuilding", "office", "store",
    ];

    private static readonly Dictionary<string, string> Aliases = BuildAliases();

    private static Dictionary<string, string> BuildAliases()
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string name in ArchiveOrder) map[name] = name;
        map["calsuburb"] = "suburb";
        map["paroffice"] = "office";
        foreach (string name in new[] { "coast", "forest", "highway", "insidecity", "mountain", "opencountry", "street", "tallbuilding" })
            map["mit" + name] = name;
        return map;
    }

    /// <summary>
    /// Display names for the given folder names when every one of them is a 15-Scene name (any layout,
    /// any case, spaces/underscores/hyphens ignored) or the folders are exactly 00–14; otherwise null
    /// and the folder names stay as they are.
    /// </summary>
    public static string[]? Normalize(IReadOnlyList<string> folderNames)
    {
        if (folderNames.Count == 0) return null;
        var result = new string[folderNames.Count];
        bool allNamed = true;
        for (int i = 0; i < folderNames.Count && allNamed; i++)
            allNamed = Aliases.TryGetValue(Key(folderNames[i]), out result[i]!);
        if (allNamed) return result;

        // Numbered folders only when all fifteen are there: "00".."09" alone is more likely digits.
        if (folderNames.Count != ArchiveOrder.Count) return null;
        var seen = new bool[ArchiveOrder.Count];
        for (int i = 0; i < folderNames.Count; i++)
        {
            string f = folderNames[i];
            if (f.Length != 2 || !char.IsAsciiDigit(f[0]) || !char.IsAsciiDigit(f[1])) return null;
            int n = (f[0] - '0') * 10 + (f[1] - '0');
            if (n >= ArchiveOrder.Count || seen[n]) return null;
            seen[n] = true;
            result[i] = ArchiveOrder[n];
        }
        return result;
    }

    private static string Key(string folderName)
    {
        var chars = folderName.Where(c => c is not (' ' or '_' or '-')).Select(char.ToLowerInvariant);
        return new string([.. chars]);
    }
}
