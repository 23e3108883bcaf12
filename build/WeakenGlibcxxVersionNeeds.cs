// Build step: lets TorchSharp 0.107's libLibTorchSharp.so load on hosts whose libstdc++ is older than
// GCC 13's (Debian 12 ships GLIBCXX_3.4.30).
//
// Why this is safe: the library asks for GLIBCXX_3.4.32 through a single link-only reference,
// std::ios_base_library_init, that GCC 13's <iostream> emits only to pin the library version; the
// symbol is never called. Marking that version requirement VER_FLG_WEAK in the .gnu.version_r
// section tells the dynamic loader that a missing version is not fatal, so the library loads and
// every symbol it really uses resolves against the host's libstdc++.
//
// Only versions in AllowedVersions are ever weakened, and only when the host's libstdc++ lacks
// them; any other missing version is reported as an error rather than hidden.
//
// This file is compiled twice: by MSBuild's RoslynCodeTaskFactory (build/Loom.WeakenGlibcxx.targets, which
// Directory.Build.targets imports and the Loom.Core package carries to its consumers) and
// by Loom.Core.Tests, which tests ElfVersionNeeds on real and synthetic ELF files.

#nullable enable

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Loom.Build
{
    /// <summary>One version requirement (a Vernaux entry) of an ELF shared object.</summary>
    public sealed class ElfVersionNeed
    {
        /// <summary>Creates a requirement.</summary>
        public ElfVersionNeed(string file, string version, bool isWeak, long flagsOffset)
        {
            File = file; Version = version; IsWeak = isWeak; FlagsOffset = flagsOffset;
        }

        /// <summary>The library the version is needed from (for example libstdc++.so.6).</summary>
        public string File { get; }

        /// <summary>The version name (for example GLIBCXX_3.4.32).</summary>
        public string Version { get; }

        /// <summary>Whether VER_FLG_WEAK is set: a missing version is then not fatal to the loader.</summary>
        public bool IsWeak { get; }

        /// <summary>Byte offset of the entry's vna_flags field in the file.</summary>
        public long FlagsOffset { get; }
    }

    /// <summary>Reads and edits the version requirements (.gnu.version_r) of a 64-bit little-endian ELF file.</summary>
    public static class ElfVersionNeeds
    {
        /// <summary>The ELF VER_FLG_WEAK flag of a Vernaux entry.</summary>
        public const ushort VerFlagWeak = 0x2;

        private const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>Lists every version requirement in the file's .gnu.version_r section.</summary>
        public static IReadOnlyList<ElfVersionNeed> Read(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("only 64-bit little-endian ELF files are supported");

            long shoff = (long)BitConverter.ToUInt64(elf, 0x28);
            int shentsize = BitConverter.ToUInt16(elf, 0x3A);
            int shnum = BitConverter.ToUInt16(elf, 0x3C);
            var needs = new List<ElfVersionNeed>();
            for (int i = 0; i < shnum; i++)
            {
                long sh = shoff + (long)i * shentsize;
                if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed) continue;
                long offset = (long)BitConverter.ToUInt64(elf, (int)sh + 0x18);
                int link = (int)BitConverter.ToUInt32(elf, (int)sh + 0x28);
                int count = (int)BitConverter.ToUInt32(elf, (int)sh + 0x2C); // sh_info: number of Verneed entries
                long strtab = (long)BitConverter.ToUInt64(elf, (int)(shoff + (long)link * shentsize) + 0x18);

                long vn = offset;
                for (int n = 0; n < count; n++)
                {
                    int cnt = BitConverter.ToUInt16(elf, (int)vn + 2);
                    string file = ReadString(elf, strtab + BitConverter.ToUInt32(elf, (int)vn + 4));
                    long vna = vn + BitConverter.ToUInt32(elf, (int)vn + 8);
                    for (int a = 0; a < cnt; a++)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, (int)vna + 4);
                        string name = ReadString(elf, strtab + BitConverter.ToUInt32(elf, (int)vna + 8));
                        needs.Add(new ElfVersionNeed(file, name, (flags & VerFlagWeak) != 0, vna + 4));
                        vna += BitConverter.ToUInt32(elf, (int)vna + 12);
                    }
                    uint next = BitConverter.ToUInt32(elf, (int)vn + 12);
                    if (next == 0) break;
                    vn += next;
                }
            }
            return needs;
        }

        /// <summary>Sets VER_FLG_WEAK on each requirement of <paramref name="file"/> named in
        /// <paramref name="versions"/>; returns the requirements that were changed.</summary>
        public static IReadOnlyList<ElfVersionNeed> Weaken(byte[] elf, string file, IReadOnlyCollection<string> versions)
        {
            var changed = new List<ElfVersionNeed>();
            foreach (var need in Read(elf))
            {
                if (need.File != file || need.IsWeak || !versions.Contains(need.Version)) continue;
                ushort flags = (ushort)(BitConverter.ToUInt16(elf, (int)need.FlagsOffset) | VerFlagWeak);
                BitConverter.GetBytes(flags).CopyTo(elf, (int)need.FlagsOffset);
                changed.Add(need);
            }
            return changed;
        }

        /// <summary>The symbol versions a shared library defines, read from its version strings
        /// (for libstdc++: "GLIBCXX_3.4.30", "CXXABI_1.3.13", ...).</summary>
        public static ISet<string> DefinedVersionStrings(byte[] library, string prefix)
        {
            var found = new HashSet<string>(StringComparer.Ordinal);
            byte[] p = Encoding.ASCII.GetBytes(prefix);
            for (int i = 0; i + p.Length < library.Length; i++)
            {
                if (library[i] != p[0] || (i > 0 && library[i - 1] != 0)) continue;
                bool match = true;
                for (int j = 1; j < p.Length && match; j++) match = library[i + j] == p[j];
                if (!match) continue;
                int end = Array.IndexOf(library, (byte)0, i);
                if (end > i) found.Add(Encoding.ASCII.GetString(library, i, end - i));
            }
            return found;
        }

        private static string ReadString(byte[] elf, long offset)
        {
            int end = Array.IndexOf(elf, (byte)0, (int)offset);
            return Encoding.ASCII.GetString(elf, (int)offset, end - (int)offset);
        }
    }

    /// <summary>MSBuild task: weakens allowed libstdc++ version requirements that the host's
    /// libstdc++ does not define, in place, in each given native library.</summary>
    public sealed class WeakenGlibcxxVersionNeeds : Microsoft.Build.Utilities.Task
    {
        /// <summary>Versions that are known to be link-only references and safe to weaken.</summary>
        public static readonly string[] AllowedVersions = { "GLIBCXX_3.4.32" };

        private static readonly string[] LibStdCxxCandidates =
        {
            "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib64/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        };

        /// <summary>The native libraries to patch (missing files are ignored).</summary>
        [Required]
        public ITaskItem[] Libraries { get; set; } = Array.Empty<ITaskItem>();

        /// <inheritdoc />
        public override bool Execute()
        {
            string? hostLib = LibStdCxxCandidates.FirstOrDefault(File.Exists);
            if (hostLib == null)
            {
                Log.LogMessage(MessageImportance.Low, "No host libstdc++.so.6 found; native libraries left unchanged.");
                return true;
            }
            var hostVersions = ElfVersionNeeds.DefinedVersionStrings(File.ReadAllBytes(hostLib), "GLIBCXX_");
            foreach (var item in Libraries)
            {
                string path = item.ItemSpec;
                if (!File.Exists(path)) continue;
                byte[] elf = File.ReadAllBytes(path);
                var missing = ElfVersionNeeds.Read(elf)
                    .Where(n => n.File == "libstdc++.so.6" && !n.IsWeak && n.Version.StartsWith("GLIBCXX_", StringComparison.Ordinal)
                                && !hostVersions.Contains(n.Version))
                    .Select(n => n.Version).Distinct().ToList();
                if (missing.Count == 0) continue;
                var unsafeVersions = missing.Except(AllowedVersions).ToList();
                if (unsafeVersions.Count > 0)
                {
                    Log.LogError($"{path} needs {string.Join(", ", unsafeVersions)} from libstdc++, which {hostLib} lacks; install a newer libstdc++6 (GCC 13 or later).");
                    return false;
                }
                ElfVersionNeeds.Weaken(elf, "libstdc++.so.6", missing);
                string temp = path + ".patching";
                File.WriteAllBytes(temp, elf);
                File.Copy(temp, path, overwrite: true);
                File.Delete(temp);
                Log.LogMessage(MessageImportance.High, $"Loom: marked {string.Join(", ", missing)} weak in {Path.GetFileName(path)} (host libstdc++ lacks it; see build/WeakenGlibcxxVersionNeeds.cs).");
            }
            return true;
        }
    }
}
