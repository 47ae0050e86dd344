using System.CommandLine;
using Tp7.Engine.Features;

namespace Tp7.Cli;

/// <summary>
/// --shard INDEX/COUNT, or --shards COUNT with the index from the scheduler's environment (JOB_COMPLETION_INDEX,
/// SLURM_ARRAY_TASK_ID), and the {shard} placeholder of --out: one command line for every task of a cluster job.
/// See docs/scale-out.md.
/// </summary>
sealed class ShardOptions
{
    public const string Placeholder = "{shard}";

    public readonly Option<string?> Explicit = new Option<string?>("--shard")
    {
        HelpName = "INDEX/COUNT",
        Description = "Extract only shard INDEX/COUNT of the listing (INDEX from 0): the contiguous block [INDEX*N/COUNT, (INDEX+1)*N/COUNT) of its N images; join the shards with 'tp7 merge'",
    }.ShardSpec();

    public readonly Option<int?> Count = new Option<int?>("--shards")
    {
        HelpName = "COUNT",
        Description = $"Extract one of COUNT shards, the index from the environment: {Sharding.KubernetesIndex} (Kubernetes Indexed Job), else " +
                      $"({Sharding.SlurmTaskId} - {Sharding.SlurmTaskMin}) / {Sharding.SlurmTaskStep} (Slurm job array; {Sharding.SlurmTaskCount} must equal COUNT)",
    }.AtLeast(1);

    public ShardOptions(Command command)
    {
        command.Options.Add(Explicit);
        command.Options.Add(Count);
    }

    /// <summary>This task's shard, or null for the whole listing; every problem with the options or the environment throws, before any work.</summary>
    public Shard? Resolve(ParseResult parse, Func<string, string?>? environment = null)
    {
        string? text = parse.GetValue(Explicit);
        int? count = parse.GetValue(Count);
        if (text != null && count != null)
            throw new ArgumentException($"--shard {text} and --shards {count}: give one (--shard for an explicit shard, --shards to read it from the scheduler's environment)");
        if (text != null) return Shard.TryParse(text, out _);
        if (count is { } n) return Sharding.FromEnvironment(n, environment ?? Environment.GetEnvironmentVariable, $"--shards {n}");
        return null;
    }

    /// <summary>
    /// --out with {shard} replaced by the shard's index, checked writable again (the parse-time check saw the
    /// placeholder); {shard} without sharding is refused.
    /// </summary>
    public static string OutPath(string outPath, Shard? shard)
    {
        if (!outPath.Contains(Placeholder)) return outPath;
        if (shard is not { } s) throw new ArgumentException($"--out {outPath}: {Placeholder} is replaced by the shard's index, but neither --shard nor --shards is given");
        string path = outPath.Replace(Placeholder, s.Index.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (OptionChecks.WhyNotWritable(path) is { } why) throw new ArgumentException($"--out: {why}");
        return path;
    }
}
